-- GET /ping: the bare endpoint, a constant JSON, the baseline of the read paths.
wrk.path = "/ping"
