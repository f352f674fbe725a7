-- POST /api-calls/authorize for a random user of the set. args: TOKEN USERS_FILE
local users = {}
local token

function init(args)
  token = args[1]
  for line in io.lines(args[2]) do table.insert(users, line) end
end

function request()
  local body = '{"user_id":"' .. users[math.random(#users)] .. '","endpoint":"/file/conversion"}'
  return wrk.format("POST", "/api-calls/authorize",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
end
