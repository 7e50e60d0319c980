-- wrk: GET the paths of a file (one per line) in turn, each thread from its own start.
-- args: PATHS_FILE TOKEN ("-" for none) [HEADER=VALUE ...]
local paths, headers, i = {}, {}, 0
local threads, counter = {}, 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then table.insert(paths, line) end
  end
  if args[2] ~= "-" then headers["Authorization"] = "Token " .. args[2] end
  headers["Accept"] = "application/json"
  for n = 3, #args do
    local name, value = args[n]:match("^([^=]+)=(.*)$")
    headers[name] = value
  end
  i = (id * 7) % #paths
end

function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], headers)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,"wrapped":0}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
