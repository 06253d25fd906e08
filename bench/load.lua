-- wrk script: requests from a data file, each thread its own ids, a JSON summary at the end.
-- Arguments after `--`: data file, mode, prefix, pool size (replay), token.
-- To the bridge (POST, the token as Bearer): fresh: a new draftOrderId per request; replay: drafts
-- <prefix>0 .. <prefix>N-1, placed beforehand; get: orderIds read one a line from the data file.
-- Straight at the fake store (the token as X-Auth-Token), for the cost of one upstream round trip without the
-- bridge: create: an order_Post body with __DRAFT__; read: GET <path>/<order id>, ids one a line.

local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

function init(args)
  local file = assert(io.open(args[1], "r"))
  local text = file:read("*a")
  file:close()
  mode, prefix, pool, token = args[2], args[3], tonumber(args[4]), args[5]
  if mode == "get" or mode == "read" then
    ids = {}
    for line in text:gmatch("[^\n]+") do table.insert(ids, line) end
  else
    template = text
  end
  wrk.method = mode == "read" and "GET" or "POST"
  if mode ~= "read" then wrk.headers["Content-Type"] = "application/json" end
  if mode == "create" or mode == "read" then
    wrk.headers["Accept"] = "application/json"
    wrk.headers["X-Auth-Token"] = token
  elseif token and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
  count = 0
end

local function spread(n)
  -- Threads start at different places, so they do not ask for the same ids in step.
  return (count + tid * 7919) % n
end

function request()
  count = count + 1
  if mode == "read" then
    return wrk.format(nil, wrk.path .. "/" .. ids[spread(#ids) + 1])
  end
  local body
  if mode == "get" then
    body = '{"orderId":"' .. ids[spread(#ids) + 1] .. '"}'
  else
    local draft
    if mode == "replay" then
      draft = prefix .. spread(pool)
    elseif mode == "create" then
      draft = "direct_" .. tid .. "_" .. count
    else
      draft = prefix .. tid .. "_" .. count
    end
    body = template:gsub("__DRAFT__", draft)
  end
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
