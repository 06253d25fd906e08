-- wrk script for the bridge: POST bodies from a template, each thread its own ids, a JSON summary at the end.
-- Arguments after `--`: template file, mode (fresh | replay | get), prefix, pool size (replay), auth token.
-- fresh: a new draftOrderId per request; replay: drafts <prefix>0 .. <prefix>N-1, placed beforehand;
-- get: orderIds read one a line from the template file.

local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

function init(args)
  local file = assert(io.open(args[1], "r"))
  local text = file:read("*a")
  file:close()
  mode, prefix, pool = args[2], args[3], tonumber(args[4])
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if args[5] and args[5] ~= "" then wrk.headers["Authorization"] = "Bearer " .. args[5] end
  if mode == "get" then
    ids = {}
    for line in text:gmatch("[^\n]+") do table.insert(ids, line) end
  else
    template = text
  end
  count = 0
end

function request()
  count = count + 1
  local body
  if mode == "get" then
    body = '{"orderId":"' .. ids[((count + tid * 7919) % #ids) + 1] .. '"}'
  else
    local draft
    if mode == "fresh" then
      draft = prefix .. tid .. "_" .. count
    else
      draft = prefix .. ((count + tid * 7919) % pool)
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
