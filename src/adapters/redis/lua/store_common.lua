-- Prelude of every store script. Each script touches one key and its
-- companions in the same Redis Cluster slot:
--   state key K (a string, E-7) and {K}:exp (its expiry, epoch ms);
--   run index I (a sorted set, E-7) and {I}:meta (hash member -> meta);
--   collection C: {C}:docs (hash id -> JSON), {C}:revs (hash id -> rev).
-- Replies: {code, ...}, code < 0 an NV_E* code. Layout version 1.
local function I(x) return string.format('%d', x) end
