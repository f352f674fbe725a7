-- POST /api-calls: one new call per request, for a random user of the benchmark's set.
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
  counter = counter + 1
  local id = string.format("%s-%04x-4000-8000-%012x", run_id, thread_id, counter)
  local user = users[math.random(#users)]
  local body = '{"id":"' .. id .. '","user_id":"' .. user ..
    '","endpoint":"/file/conversion","method":"POST","status_code":200,' ..
    '"started_at":"2026-11-01T00:00:00Z","completed_at":"2026-11-01T00:00:01Z"}'
  return wrk.format("POST", "/api-calls",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
end
