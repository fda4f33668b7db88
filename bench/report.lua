-- wrk script: POST resident reports at random points of the demo city.
local token = os.getenv("BENCH_TOKEN") or ""
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))

wrk.method = "POST"
wrk.path = "/v1/reports"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token

function request()
  local lat = 30.2310 + math.random() * 0.0680
  local lon = 120.1410 + math.random() * 0.0780
  local body = string.format(
    '{"category":"garbage_overflow","description":"bench","location":{"lat":%.6f,"lon":%.6f}}',
    lat, lon)
  return wrk.format(nil, nil, nil, body)
end
