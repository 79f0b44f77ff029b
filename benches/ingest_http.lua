-- wrk script: POST NDJSON batches with fresh request ids to /v1/ingest.
-- Usage: BATCH=100 wrk -t2 -c16 -d10s -s benches/ingest_http.lua http://127.0.0.1:8787/v1/ingest
local batch = tonumber(os.getenv("BATCH") or "100")
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

local line = '{"request_id":"%s","model":"gpt-4o-mini","provider":"openai","created_at":"%s",'
  .. '"latency_ms":%d,"prompt_tokens":%d,"completion_tokens":%d,"user_id":"user_%d",'
  .. '"properties":{"environment":"production","feature":"chat"},"status":200}'

local function uuid(n)
  return string.format("%08x-0000-4000-8000-%012x", tid or 0, n)
end

request = function()
  local parts = {}
  local now = os.date("!%Y-%m-%dT%H:%M:%SZ")
  for i = 1, batch do
    counter = counter + 1
    parts[i] = string.format(line, uuid(counter), now, 200 + counter % 900, 100 + counter % 4000,
      10 + counter % 500, counter % 1000)
  end
  return wrk.format("POST", nil, { ["Content-Type"] = "application/x-ndjson" }, table.concat(parts, "\n"))
end

response = function(status, headers, body)
  if status ~= 200 then
    io.stderr:write("unexpected status " .. status .. ": " .. body .. "\n")
  end
end
