-- wrk script: GET a random one of the 100,000 files `kfs bench small --keep` leaves
-- (d<i/1000>/p<i>), through a gateway whose --root is the bench directory.
local files = tonumber(os.getenv("FILES") or "100000")
local seeded = false
request = function()
  if not seeded then
    -- Each wrk thread has its own Lua state; give each its own sequence.
    math.randomseed(os.time() + math.floor(os.clock() * 1e6))
    seeded = true
  end
  local i = math.random(0, files - 1)
  return wrk.format("GET", "/d" .. math.floor(i / 1000) .. "/p" .. i)
end
