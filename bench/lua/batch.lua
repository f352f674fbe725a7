-- POST /api-calls/batch: 1,000 new calls per request, for random users of the set.
-- args: TOKEN USERS_FILE RUN_ID
local counter = 0
local users = {}
local token, run_id
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  token, run_id = args[1], args[3]
  for line in io.lines(args[2]) do table.insert(users, line) end
  math.randomseed(thread_id * 7919 + os.time())
end

function request()
  local calls = {}
  for i = 1, 1000 do
    counter = counter + 1
    local id = string.format("%s-%04x-4000-8000-%012x", run_id, thread_id, counter)
    calls[i] = '{"id":"' .. id .. '","user_id":"' .. users[math.random(#users)] ..
      '","endpoint":"/file/conversion","method":"POST","status_code":200,' ..
      '"started_at":"2026-11-01T00:00:00Z","completed_at":"2026-11-01T00:00:01Z"}'
  end
  return wrk.format("POST", "/api-calls/batch",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"},
    '{"calls":[' .. table.concat(calls, ",") .. ']}')
end
