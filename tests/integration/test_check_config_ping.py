"""`bik-bridge check-config --ping` against the fake BigCommerce: each broken credential gets a plain message."""
from __future__ import annotations

import pytest

from bridge.ops.cli import EXIT_FAILED, EXIT_OK
from tests.fakes.bigcommerce import error_body
from tests.fakes.server import status
from tests.integration.bridge_process import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def ping(check_config_ping):
    """Run `check-config --ping` on a BigCommerce config; returns (exit code, stdout, stderr)."""
    return lambda **bigcommerce: check_config_ping({"platform": "bigcommerce", "bigcommerce": bigcommerce})


def credentials(fake, **changes) -> dict:
    return {"store_hash": fake.store_hash, "access_token": fake.access_token, "api_base_url": fake.api_base_url,
            **changes}


def test_ping_ok_says_what_it_proved(ping, fake_bc):
    code, out, _ = ping(**credentials(fake_bc))

    assert code == EXIT_OK
    assert f"ping ok: BigCommerce store {fake_bc.store_hash}: orders readable" in out
    assert [r.method for r in fake_bc.requests] == ["GET"]  # one read-only call


def test_rejected_token_says_so_and_how_to_fix_it(ping, fake_bc):
    code, out, err = ping(**credentials(fake_bc, access_token="not-the-token"))

    assert code == EXIT_FAILED
    assert "ping failed" in err and "401" in err
    assert "bigcommerce.access_token is not valid for this store" in err
    assert "not-the-token" not in out + err  # the masked config is printed, never the secret


def test_missing_scope_names_the_scope(ping, fake_bc):
    fake_bc.faults.script("list_orders", status(403, error_body(
        403, "You don't have a required scope to access the endpoint")))

    code, _, err = ping(**credentials(fake_bc))

    assert code == EXIT_FAILED
    assert "403" in err
    assert "lacks the Orders scope" in err


def test_unknown_store_hash_says_store_not_found(ping, fake_bc):
    code, _, err = ping(**credentials(fake_bc, store_hash="nosuchstore"))

    assert code == EXIT_FAILED
    assert "BigCommerce store not found" in err and "store_hash" in err


def test_unreachable_platform_names_the_address(ping, fake_bc):
    closed = f"http://127.0.0.1:{free_port()}"

    code, _, err = ping(**credentials(fake_bc, api_base_url=closed))

    assert code == EXIT_FAILED
    assert "unreachable" in err
    assert closed in err and "bigcommerce.api_base_url" in err


def test_a_redis_store_is_pinged_too_and_named_masked_when_it_does_not_answer(check_config_ping, fake_bc):
    """serve would fail on an unreachable idempotency store as much as on a refused token: --ping says both."""
    dead = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    code, out, err = check_config_ping({"platform": "bigcommerce", "bigcommerce": credentials(fake_bc),
                                        "idempotency": {"backend": "redis", "redis_url": dead}})

    assert code == EXIT_FAILED
    assert "idempotency store ping failed" in err and "idempotency.redis_url" in err
    assert f"redis://:****@127.0.0.1:{dead.rsplit(':', 1)[1]}" in err
    assert "hunter2-secret" not in out + err
    assert "ping ok: BigCommerce store" in out  # the platform was still asked


def test_a_redis_store_that_answers_is_said_to(check_config_ping, fake_bc, redis_url):
    code, out, _ = check_config_ping({"platform": "bigcommerce", "bigcommerce": credentials(fake_bc),
                                      "idempotency": {"backend": "redis", "redis_url": redis_url}})

    assert code == EXIT_OK
    assert "idempotency store ok: redis://127.0.0.1:" in out
