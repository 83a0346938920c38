-- wrk script for `make bench`: replays one request template, stamping fresh ids into it.
-- The spec file (args[1]) holds the method, the path, headers, a blank line, then the body.
-- Every "{{ID}}" in the body becomes an id no other request of this run uses, so dedup
-- never short-cuts the work. With "BODIES <file>" as the body, pre-built bodies
-- (length-prefixed, e.g. gzip, where ids cannot be stamped) are replayed in order instead.
local method, path, headers, pieces, bodies = nil, nil, {}, nil, nil
local counter, next_body, prefix = 0, 0, ""
local thread_no = 0

function setup(thread)
  thread_no = thread_no + 1
  thread:set("thread_no", thread_no)
end

local function read(name)
  local f = assert(io.open(name, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

function init(args)
  local spec = read(args[1])
  local head, body = spec:match("^(.-)\n\n(.*)$")
  local lines = {}
  for line in head:gmatch("[^\n]+") do lines[#lines + 1] = line end
  method, path = lines[1], lines[2]
  for i = 3, #lines do
    local name, value = lines[i]:match("^([^:]+):%s*(.*)$")
    headers[name] = value
  end
  prefix = (args[2] or "run") .. "-" .. tostring(wrk.thread:get("thread_no") or 0) .. "-"
  local bodies_file = body:match("^BODIES (.+)$")
  if bodies_file then
    bodies = {}
    local data, pos = read(bodies_file), 1
    while pos <= #data do
      local eol = data:find("\n", pos, true)
      local size = tonumber(data:sub(pos, eol - 1))
      bodies[#bodies + 1] = data:sub(eol + 1, eol + size)
      pos = eol + 1 + size
    end
  else
    pieces = {}
    local start = 1
    while true do
      local a, b = body:find("{{ID}}", start, true)
      if not a then break end
      pieces[#pieces + 1] = body:sub(start, a - 1)
      start = b + 1
    end
    pieces[#pieces + 1] = body:sub(start)
  end
end

function request()
  local body
  if bodies then
    next_body = next_body % #bodies + 1
    body = bodies[next_body]
  else
    counter = counter + 1
    local parts, id = {}, prefix .. counter .. "-"
    for i = 1, #pieces - 1 do
      parts[#parts + 1] = pieces[i]
      parts[#parts + 1] = id .. i
    end
    parts[#parts + 1] = pieces[#pieces]
    body = table.concat(parts)
  end
  return wrk.format(method, path, headers, body)
end

-- Optional pacing for the fixed-rate run: each connection waits this many ms between
-- requests on average. The waits are drawn at random (exponentially, as between the
-- requests of independent clients): fixed waits keep wrk's connections in lockstep, so
-- the server would see synchronised bursts of one request per connection.
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
if pause > 0 then
  math.randomseed(os.time())
  function delay() return -pause * math.log(1 - math.random()) end
end
