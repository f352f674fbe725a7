-- GET /user/payment/balance as a random user of the set. args: TOKENS_FILE
local tokens = {}

function init(args)
  for line in io.lines(args[1]) do table.insert(tokens, line) end
end

function request()
  return wrk.format("GET", "/user/payment/balance",
    {["Authorization"] = "Bearer " .. tokens[math.random(#tokens)]})
end
