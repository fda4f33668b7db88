-- wrk script for bench/limits.py: POST to BENCH_PATH as one of the callers listed in
-- BENCH_CALLERS (a file of "<token> <address>" lines), round-robin per thread, each from its
-- own address (X-Forwarded-For, which `gridflow api` takes from 127.0.0.1).
local path = os.getenv("BENCH_PATH") or "/v1/tickets"
local callers = {}
for line in io.lines(os.getenv("BENCH_CALLERS")) do
  local token, address = line:match("^(%S+) (%S+)$")
  callers[#callers + 1] = {token = token, address = address}
end
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
local n = math.random(#callers)

function request()
  n = n % #callers + 1
  local c = callers[n]
  local headers = {
    ["Authorization"] = "Bearer " .. c.token,
    ["X-Forwarded-For"] = c.address,
    ["Content-Type"] = "application/json",
  }
  local body = nil
  if path == "/v1/reports" then
    body = string.format(
      '{"category":"garbage_overflow","description":"bench","location":{"lat":%.6f,"lon":%.6f}}',
      30.2310 + math.random() * 0.0680, 120.1410 + math.random() * 0.0780)
  end
  return wrk.format("POST", path, headers, body)
end
