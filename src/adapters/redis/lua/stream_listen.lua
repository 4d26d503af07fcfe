-- KEYS[1] the live channel of the events that are not flow.* ones: a
-- subscription to it just started (after its SUBSCRIBE; see listening in
-- stream_common.lua). Reply {1}.
heard(KEYS[1])
return { 1 }
