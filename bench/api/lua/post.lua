-- wrk: POST the JSON bodies of a file (one per line) to one path, each body once: thread
-- n takes lines OFFSET + n*PER_THREAD + 1 .. + PER_THREAD. A thread that runs out starts
-- its slice again (those repeats are then conflicts, and are counted as "wrapped").
-- PER_THREAD 0: every thread sends the whole file in turn (a body meant to repeat).
-- args: BODIES_FILE PATH TOKEN ("-" for none) OFFSET PER_THREAD
local bodies, headers, path, i, repeating = {}, {}, "/", 0, false
wrapped = 0 -- global: done() reads it from each thread
local threads, counter = {}, 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  path = args[2]
  repeating = tonumber(args[5]) == 0
  local first = tonumber(args[4]) + id * tonumber(args[5]) + 1
  local last = first + tonumber(args[5]) - 1
  if repeating then first, last = 1, math.huge end
  local n = 0
  for line in io.lines(args[1]) do
    n = n + 1
    if n > last then break end
    if n >= first then table.insert(bodies, line) end
  end
  headers["Content-Type"] = "application/json"
  headers["Accept"] = "application/json"
  if args[3] ~= "-" then headers["Authorization"] = "Token " .. args[3] end
end

function request()
  i = i + 1
  if i > #bodies then
    i = 1
    if not repeating then wrapped = wrapped + 1 end
  end
  return wrk.format("POST", path, headers, bodies[i])
end

function done(summary, latency, requests)
  local e, w = summary.errors, 0
  for _, thread in ipairs(threads) do w = w + (thread:get("wrapped") or 0) end
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,"wrapped":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), w))
end
