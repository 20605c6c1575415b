-- wrk script for run (d): every request carries a different forged token.
-- Half are the legitimate claims under the trusted kid with a random
-- (well-formed) signature: each costs the gateway a full parse and a real
-- RSA verification and ends in signature-invalid. A quarter name an unknown
-- kid, a quarter are not JWS at all. Nothing repeats, so the verdict
-- cache never helps and never grows (only accepted verdicts are cached).
-- FORGE_LUA names the file bench_setup wrote with the protected headers;
-- REPORT_LUA the shared `done` hook.

dofile(os.getenv("FORGE_LUA"))
dofile(os.getenv("REPORT_LUA"))

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

local function b64(n)
  local t = {}
  for i = 1, n do
    local k = math.random(1, 64)
    t[i] = alphabet:sub(k, k)
  end
  return table.concat(t)
end

-- A 256-byte RS256 signature is 342 base64url characters, the last of which
-- must have its low four bits clear (strict decoding refuses the rest).
local function sig()
  local k = math.random(1, 4)
  return b64(341) .. ("AQgw"):sub(k, k)
end

local counter = 0

function setup(thread)
  thread:set("seed", math.random(1, 1e9))
end

function init(args)
  math.randomseed(seed or os.time())
end

request = function()
  counter = counter + 1
  local kind = counter % 4
  local token
  if kind == 0 or kind == 1 then
    token = forge_headers[1] .. "." .. forge_payload .. "." .. sig()
  elseif kind == 2 then
    token = forge_headers[2] .. "." .. forge_payload .. "." .. sig()
  else
    token = b64(64)
  end
  return wrk.format("GET", "/orders", { ["Authorization"] = "Bearer " .. token })
end
