-- wrk script straight at the fake store, for the cost of one upstream round trip without the bridge.
-- Arguments after `--`: file (create: an order_Post body with __DRAFT__; get: order ids, one a line), mode
-- (create | get), store access token.

local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

function init(args)
  local file = assert(io.open(args[1], "r"))
  local text = file:read("*a")
  file:close()
  mode = args[2]
  wrk.headers["Accept"] = "application/json"
  wrk.headers["X-Auth-Token"] = args[3]
  if mode == "get" then
    wrk.method = "GET"
    ids = {}
    for line in text:gmatch("[^\n]+") do table.insert(ids, line) end
  else
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    template = text
  end
  count = 0
end

function request()
  count = count + 1
  if mode == "get" then
    return wrk.format(nil, wrk.path .. "/" .. ids[((count + tid * 7919) % #ids) + 1])
  end
  local body = template:gsub("__DRAFT__", "direct_" .. tid .. "_" .. count)
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
