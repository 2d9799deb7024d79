-- wrk script: POST prepared Open Inference Protocol requests (JSON header + binary tensor data), cycling through
-- them, so that every request carries other latents. benchmarks/protocol_compare.py writes them.
--   wrk -t1 -c32 -d10s -s benchmarks/infer.lua http://127.0.0.1:8000 -- BODY_DIR COUNT PATH
-- BODY_DIR holds N.bin (the body) and N.len (its Inference-Header-Content-Length; empty for an all-JSON body)
-- for N in 0..COUNT-1.
-- Prints one JSON line with requests, seconds, errors and latency percentiles (ms).
local bodies, lengths = {}, {}
local path = "/v2/models/dcgan/infer"
local next_body = 0

function init(args)
  local dir, count = args[1], tonumber(args[2])
  path = args[3] or path
  for k = 0, count - 1 do
    local body = io.open(string.format("%s/%d.bin", dir, k), "rb")
    bodies[k + 1] = body:read("*a")
    body:close()
    local length = io.open(string.format("%s/%d.len", dir, k), "r")
    lengths[k + 1] = length:read("*l")
    length:close()
  end
end

function request()
  next_body = next_body % #bodies + 1
  if lengths[next_body] == nil or lengths[next_body] == "" then  -- all JSON: no binary part
    return wrk.format("POST", path, {["Content-Type"] = "application/json"}, bodies[next_body])
  end
  return wrk.format("POST", path, {["Content-Type"] = "application/octet-stream",
                                   ["Inference-Header-Content-Length"] = lengths[next_body]}, bodies[next_body])
end

-- done(): the one JSON line the benchmarks read, from the file beside this one
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_report.lua")
