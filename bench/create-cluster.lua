-- wrk script for bench/commit.sh: every request is POST /v1/clusters with a
-- name unique across threads and requests of this wrk run.
--   wrk -s bench/create-cluster.lua URL -- TOKEN PREFIX
-- PREFIX must differ between runs against the same server (names are unique).

local next_id = 0

-- Runs in wrk's main thread once per thread before it starts: give each an id.
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  token = args[1] or error("usage: -- TOKEN PREFIX")
  prefix = args[2] or "bench"
  counter = 0
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Bearer " .. token
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local body = string.format('{"clusterName":"%s-t%d-%d"}', prefix, id, counter)
  return wrk.format("POST", "/v1/clusters", nil, body)
end
