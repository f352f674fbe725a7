-- GET /ping: the bare endpoint, a constant JSON, the baseline of the read paths.
function response(status, headers, body)
  if status ~= 200 then print("unexpected status " .. status) end
end
