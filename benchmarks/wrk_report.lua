-- What a wrk script of the benchmarks prints when it is done (benchmarks/generate.lua, benchmarks/infer.lua load it):
-- one JSON line with requests, seconds, errors (connect, read, write, non-2xx status, timeout) and latency
-- percentiles in ms.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"errors":%d,"p50_ms":%.3f,"p99_ms":%.3f}\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
