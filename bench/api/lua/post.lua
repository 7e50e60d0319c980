-- wrk: POST the JSON bodies of a file (one per line) to one path, each body once. The
-- THREADS threads take turns through lines OFFSET + 1 .. OFFSET + THREADS * PER_THREAD
-- (thread n: OFFSET + n + 1, then every THREADS-th), so what they send together is close
-- to the first lines of that range, and `done` reports how far each got ("used": the most
-- any thread took), for the bench to hand the rest to the next run. A thread that runs
-- out starts its share again (those repeats are then conflicts, counted as "wrapped").
-- PER_THREAD 0: every thread sends the whole file in turn (a body meant to repeat).
-- args: BODIES_FILE PATH TOKEN ("-" for none) OFFSET PER_THREAD THREADS
local bodies, headers, path, i, repeating = {}, {}, "/", 0, false
wrapped = 0 -- globals: done() reads them from each thread
taken = 0
local threads, counter = {}, 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  path = args[2]
  repeating = tonumber(args[5]) == 0
  local offset, per_thread = tonumber(args[4]), tonumber(args[5])
  local stride = tonumber(args[6] or "1")
  local first, last = offset + id + 1, offset + stride * per_thread
  if repeating then first, last, stride = 1, math.huge, 1 end
  local n = 0
  for line in io.lines(args[1]) do
    n = n + 1
    if n > last then break end
    if n >= first and (n - first) % stride == 0 then table.insert(bodies, line) end
  end
  headers["Content-Type"] = "application/json"
  headers["Accept"] = "application/json"
  if args[3] ~= "-" then headers["Authorization"] = "Token " .. args[3] end
end

function request()
  i = i + 1
  if taken < #bodies then taken = taken + 1 end
  if i > #bodies then
    i = 1
    if not repeating then wrapped = wrapped + 1 end
  end
  return wrk.format("POST", path, headers, bodies[i])
end

function done(summary, latency, requests)
  local e, w, used = summary.errors, 0, 0
  for _, thread in ipairs(threads) do
    w = w + (thread:get("wrapped") or 0)
    used = math.max(used, thread:get("taken") or 0)
  end
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,"wrapped":%d,"used":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), w, used))
end
