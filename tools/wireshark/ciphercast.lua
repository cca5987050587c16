-- Wireshark dissector for the ciphercast protocol (TCP port 8005).
--
-- Load it for one capture:   wireshark -X lua_script:tools/wireshark/ciphercast.lua
--                            tshark -X lua_script:tools/wireshark/ciphercast.lua -r capture.pcap -Y ciphercast
-- or copy it into your personal plugins folder (Help → About Wireshark → Folders).
-- For another port: Decode As… → TCP port → CIPHERCAST.
--
-- Each frame: u32 big-endian length (of kind + payload), u8 kind, payload.
-- Kind 0: a JSON control message (shown with Wireshark's JSON dissector).
-- Kind 1: a video frame: stream u32, sequence u32, presentation time u64 (µs),
--         label length u8, label (e.g. "720p"), then a JPEG picture.

local ciphercast = Proto("ciphercast", "ciphercast protocol")

local kinds = { [0] = "control (JSON)", [1] = "video frame" }

local f = {
    length     = ProtoField.uint32("ciphercast.length", "Length", base.DEC),
    kind       = ProtoField.uint8("ciphercast.kind", "Kind", base.DEC, kinds),
    type       = ProtoField.string("ciphercast.type", "Message type"),
    name       = ProtoField.string("ciphercast.name", "Name"),
    from       = ProtoField.string("ciphercast.from", "From"),
    to         = ProtoField.string("ciphercast.to", "To"),
    video      = ProtoField.string("ciphercast.video_name", "Video"),
    stream     = ProtoField.uint32("ciphercast.video.stream", "Stream", base.DEC),
    sequence   = ProtoField.uint32("ciphercast.video.sequence", "Sequence", base.DEC),
    pts        = ProtoField.uint64("ciphercast.video.pts_us", "Presentation time (µs)", base.DEC),
    resolution = ProtoField.string("ciphercast.video.resolution", "Resolution"),
    jpeg       = ProtoField.bytes("ciphercast.video.jpeg", "JPEG picture"),
}
ciphercast.fields = { f.length, f.kind, f.type, f.name, f.from, f.to, f.video,
                      f.stream, f.sequence, f.pts, f.resolution, f.jpeg }

local json = Dissector.get("json")
local HEADER = 5

-- The first string value of `key` in a JSON text (enough for display; the
-- JSON dissector below shows the whole message).
local function field(text, key)
    return text:match('"' .. key .. '"%s*:%s*"([^"]*)"')
end

-- The first number value of `key` (stream ids, frame numbers).
local function number(text, key)
    return text:match('"' .. key .. '"%s*:%s*(%d+)')
end

local function frame_length(tvb, pinfo, offset)
    return tvb(offset, 4):uint() + 4
end

local function dissect_frame(tvb, pinfo, tree)
    local length = tvb(0, 4):uint()
    local kind = tvb(4, 1):uint()
    local item = tree:add(ciphercast, tvb(0, length + 4))
    item:add(f.length, tvb(0, 4))
    item:add(f.kind, tvb(4, 1))
    local summary
    if kind == 0 and length > 1 then
        local payload = tvb(HEADER, length - 1)
        local text = payload:string()
        local mtype = field(text, "type") or "?"
        item:add(f.type, payload, mtype)
        summary = mtype
        local from, to, name, video = field(text, "from"), field(text, "to"), field(text, "name"), field(text, "video")
        if name then item:add(f.name, payload, name); summary = summary .. " " .. name end
        if from then item:add(f.from, payload, from); summary = summary .. " from " .. from end
        if to then item:add(f.to, payload, to); summary = summary .. " to " .. to end
        if video then item:add(f.video, payload, video); summary = summary .. " " .. video end
        -- Steering a stream: where it stands after a pause, resume or seek.
        local state, next_frame, frame = field(text, "state"), number(text, "next_frame"), number(text, "frame")
        if frame then summary = summary .. " to frame " .. frame end
        if state then summary = summary .. " " .. state end
        if next_frame then summary = summary .. ", next frame " .. next_frame end
        -- The adaptive plan: a play asking for it, and each switch it makes.
        local plan, resolution, kbps = field(text, "plan"), field(text, "resolution"), number(text, "measured_kbps")
        if plan then summary = summary .. " plan " .. plan end
        if resolution then summary = summary .. " at " .. resolution end
        if kbps then summary = summary .. " (measured " .. kbps .. " kbit/s)" end
        json:call(payload:tvb(), pinfo, item)
    elseif kind == 1 and length >= 18 then
        local label_length = tvb(HEADER + 16, 1):uint()
        item:add(f.stream, tvb(HEADER, 4))
        item:add(f.sequence, tvb(HEADER + 4, 4))
        item:add(f.pts, tvb(HEADER + 8, 8))
        local resolution = tvb(HEADER + 17, label_length):string()
        item:add(f.resolution, tvb(HEADER + 17, label_length))
        local jpeg_start = HEADER + 17 + label_length
        if length + 4 > jpeg_start then
            item:add(f.jpeg, tvb(jpeg_start, length + 4 - jpeg_start))
        end
        summary = string.format("video stream %d frame %d %s", tvb(HEADER, 4):uint(), tvb(HEADER + 4, 4):uint(), resolution)
    else
        summary = "malformed frame"
    end
    item:append_text(": " .. summary)
    pinfo.cols.protocol = "ciphercast"
    pinfo.cols.info:append(" [" .. summary .. "]")
    return length + 4
end

function ciphercast.dissector(tvb, pinfo, tree)
    pinfo.cols.info:clear()
    pinfo.cols.info:set(tostring(pinfo.src_port) .. " → " .. tostring(pinfo.dst_port))
    dissect_tcp_pdus(tvb, tree, HEADER, frame_length, dissect_frame)
end

DissectorTable.get("tcp.port"):add(8005, ciphercast)
