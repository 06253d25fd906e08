"""Platform plumbing: sending requests with bounded retries, the platform's quota, requests as plain data."""
