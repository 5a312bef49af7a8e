-- wrk script for bench/load.sh: POSTs real documents, cycling through the
-- JSON bodies in the file named by env BODIES (one body per line), and at the
-- end prints one JSON line with requests, errors and latency percentiles.
--
--   BODIES=bodies.jsonl wrk -t2 -c64 -d10s -s bench/post.lua http://127.0.0.1:8080/predict

local requests = {}
local n = 0
local i = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

function init(args)
  local path = os.getenv("BODIES")
  local f = assert(io.open(path, "r"), "cannot open BODIES=" .. tostring(path))
  local headers = { ["Content-Type"] = "application/json" }
  for line in f:lines() do
    if #line > 0 then
      n = n + 1
      requests[n] = wrk.format("POST", nil, headers, line)
    end
  end
  f:close()
  assert(n > 0, "no bodies in " .. path)
  -- Threads start at different offsets so they do not send the same text in lockstep.
  i = ((thread_id or 1) - 1) * 7919 % n
end

function request()
  i = i % n + 1
  return requests[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,' ..
    '"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.connect, e.read, e.write, e.status, e.timeout))
end
