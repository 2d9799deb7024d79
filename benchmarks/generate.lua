-- wrk script: POST /generate with a new seed on every request, so no cache can stand in for the work.
--   wrk -t1 -c32 -d10s -s benchmarks/generate.lua http://127.0.0.1:8000 -- MODEL COUNT [PATH]
-- Prints one JSON line with requests, seconds, errors and latency percentiles (ms).
local model, count, path = "dcgan", 1, "/generate"
local counter = 0
local thread_index = 0

function setup(thread)
  thread:set("thread_index", thread_index)
  thread_index = thread_index + 1
end

function init(args)
  model = args[1] or model
  count = tonumber(args[2] or count)
  path = args[3] or path
  counter = (thread_index or 0) * 1000000000
end

function request()
  counter = counter + 1
  local body = string.format('{"model":"%s","seed":%d,"count":%d}', model, counter, count)
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end

-- done(): the one JSON line the benchmarks read, from the file beside this one
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_report.lua")
