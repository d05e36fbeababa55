"""capture.vospi: the VoSPI frame assembler and packetizer, on byte streams built here."""
from __future__ import annotations

import binascii
import random

import numpy as np
import pytest

from capture import vospi
from capture.vospi import FrameAssembler, PACKET_BYTES, encode_frame

RNG = np.random.default_rng(7)


def image(sensor: str, seed: int = 0) -> np.ndarray:
    rows, cols = vospi.SENSORS[sensor]
    return np.random.default_rng(seed).integers(0, 1 << 16, (rows, cols), dtype=np.uint16)


def packets(stream: bytes) -> list[bytes]:
    return [stream[i:i + PACKET_BYTES] for i in range(0, len(stream), PACKET_BYTES)]


def corrupt(packet: bytes, byte: int = 100) -> bytes:
    data = bytearray(packet)
    data[byte] ^= 0x01
    return bytes(data)


def feed_all(assembler: FrameAssembler, stream: bytes, chunk: int = 0) -> list:
    if not chunk:
        return assembler.feed(stream)
    out = []
    for i in range(0, len(stream), chunk):
        out += assembler.feed(stream[i:i + chunk])
    return out


# ---------------------------------------------------------------- packets, CRC, packetizer

def test_crc_matches_binascii_with_the_datasheet_masking():
    stream = encode_frame(image("lepton3"), "lepton3")
    for p in packets(stream):
        masked = bytes((p[0] & 0x0F, p[1], 0, 0)) + p[4:]
        assert binascii.crc_hqx(masked, 0) == (p[2] << 8 | p[3])
    arr = np.frombuffer(stream, np.uint8).reshape(-1, PACKET_BYTES)
    random_packets = RNG.integers(0, 256, (50, PACKET_BYTES), dtype=np.uint8)
    for row, crc in zip(random_packets, vospi.packet_crcs(random_packets)):
        p = row.tobytes()
        assert crc == binascii.crc_hqx(bytes((p[0] & 0x0F, p[1], 0, 0)) + p[4:], 0)
    assert (vospi.packet_crcs(arr) == (arr[:, 2].astype(int) << 8 | arr[:, 3])).all()


def test_lepton3_packet_layout_is_as_the_datasheet_says():
    img = image("lepton3", 1)
    ps = packets(encode_frame(img, "lepton3"))
    assert len(ps) == 240
    for seg in range(4):
        for p in range(60):
            packet = ps[seg * 60 + p]
            ident = packet[0] << 8 | packet[1]
            assert ident & 0x0FFF == p
            assert ident >> 12 == (seg + 1 if p == 20 else 0)
            row = 30 * seg + p // 2
            half = img[row, 80 * (p % 2):80 * (p % 2) + 80]
            assert packet[4:] == half.astype(">u2").tobytes()


def test_lepton2_packet_layout_one_row_per_packet():
    img = image("lepton2", 2)
    ps = packets(encode_frame(img, "lepton2"))
    assert len(ps) == 60
    for p, packet in enumerate(ps):
        assert (packet[0] << 8 | packet[1]) == p
        assert packet[4:] == img[p].astype(">u2").tobytes()


def test_encode_frame_refuses_a_wrong_shape_or_sensor():
    with pytest.raises(ValueError, match=r"\(60, 80\).*lepton3 frame is \(120, 160\)"):
        encode_frame(image("lepton2"), "lepton3")
    with pytest.raises(ValueError, match="sensor 'lepton9'"):
        encode_frame(image("lepton2"), "lepton9")
    with pytest.raises(ValueError, match="telemetry 'middle'"):
        FrameAssembler("lepton3", "middle")


# ---------------------------------------------------------------- clean streams

@pytest.mark.parametrize("sensor", ["lepton2", "lepton3"])
@pytest.mark.parametrize("telemetry", ["off", "header", "footer"])
def test_frames_come_back_byte_exact(sensor, telemetry):
    imgs = [image(sensor, i) for i in range(4)]
    stream = b"".join(vospi.discard_packets(5) + encode_frame(im, sensor, telemetry,
                                                               frame_counter=100 + i)
                      for i, im in enumerate(imgs))
    a = FrameAssembler(sensor, telemetry)
    frames = a.feed(stream)
    assert len(frames) == 4
    for frame, im in zip(frames, imgs):
        assert frame.image.dtype == np.uint16 and frame.image.shape == im.shape
        assert np.array_equal(frame.image, im)
    if telemetry == "off":
        assert all(f.telemetry is None for f in frames)
    else:
        assert [f.telemetry["frame_counter"] for f in frames] == [100, 101, 102, 103]
    c = a.counters_dict()
    per_frame = (60 if sensor == "lepton2" else 240) + (0 if telemetry == "off" else
                                                         (3 if sensor == "lepton2" else 4))
    assert c["packets"] == 4 * (5 + per_frame)
    assert c["discards"] == 20
    assert c["frames"] == 4
    assert c["crc_errors"] == c["sequence_errors"] == c["dropped_frames"] == 0
    assert c["dropped_segments"] == 0


def test_frame_image_is_a_fresh_array_the_caller_may_keep():
    a = FrameAssembler("lepton3")
    stream = bytearray(encode_frame(image("lepton3", 3), "lepton3"))
    frame = a.feed(stream)[0]
    before = frame.image.copy()
    stream[:] = bytes(len(stream))  # the caller reuses its buffer
    a.feed(encode_frame(image("lepton3", 4), "lepton3"))
    assert frame.image.flags.owndata or frame.image.base is not None
    assert frame.image.flags.writeable
    assert np.array_equal(frame.image, before)


@pytest.mark.parametrize("sensor", ["lepton2", "lepton3"])
def test_any_chunking_gives_the_same_frames(sensor):
    imgs = [image(sensor, i) for i in range(3)]
    stream = b"".join(vospi.discard_packets(3) + encode_frame(im, sensor) for im in imgs)
    bad = bytearray(stream)
    bad[PACKET_BYTES * 40 + 77] ^= 0x10  # a CRC error in the first frame
    stream = bytes(bad)
    whole = FrameAssembler(sensor).feed(stream)
    rnd = random.Random(3)
    for _ in range(5):
        a = FrameAssembler(sensor)
        out, i = [], 0
        while i < len(stream):
            n = rnd.choice([1, 2, 163, 164, 165, 500, 4096, rnd.randint(1, 9000)])
            out += a.feed(stream[i:i + n])
            i += n
        assert [f.image.tobytes() for f in out] == [f.image.tobytes() for f in whole]
    assert len(whole) == 2


def test_telemetry_fields_are_parsed():
    img = image("lepton3", 5)
    stream = encode_frame(img, "lepton3", "footer", frame_counter=0x12345, fpa_temp_k=301.25,
                          ffc_state=2, time_ms=0x10002)
    frame = FrameAssembler("lepton3", "footer").feed(stream)[0]
    t = frame.telemetry
    assert t["frame_counter"] == 0x12345
    assert t["fpa_temp_k"] == pytest.approx(301.25)
    assert t["fpa_temp_c"] == pytest.approx(28.10)
    assert t["ffc_state"] == "in progress"
    assert t["time_ms"] == 0x10002
    assert np.array_equal(frame.image, img)


def test_lepton3_telemetry_footer_sits_in_segment_4_packets_57_to_60():
    ps = packets(encode_frame(image("lepton3"), "lepton3", "footer", frame_counter=9))
    assert len(ps) == 244
    seg4 = ps[183:244]
    assert [(p[0] << 8 | p[1]) & 0xFFF for p in seg4] == list(range(61))
    row_a = np.frombuffer(seg4[57][4:], ">u2")
    assert row_a[20] == 9


def test_lepton2_telemetry_header_is_packets_0_to_2():
    img = image("lepton2", 6)
    ps = packets(encode_frame(img, "lepton2", "header", frame_counter=4))
    assert len(ps) == 63
    assert np.frombuffer(ps[0][4:], ">u2")[20] == 4
    assert ps[3][4:] == img[0].astype(">u2").tobytes()


def test_footer_telemetry_read_with_telemetry_off_still_gives_the_images():
    img = image("lepton2", 3)
    stream = encode_frame(img, "lepton2", "footer") * 2
    a = FrameAssembler("lepton2", "off")
    frames = a.feed(stream)
    assert len(frames) == 2 and np.array_equal(frames[1].image, img)
    # Packets 60..62 cannot exist without telemetry: they are counted, not used.
    assert a.counters.sequence_errors == 7  # 60, 61, 62 twice; 0 after 62


# ---------------------------------------------------------------- damaged streams

def test_bad_crc_drops_that_frame_and_the_next_good_frame_is_found():
    a, b = image("lepton2", 1), image("lepton2", 2)
    ps = packets(encode_frame(a, "lepton2"))
    ps[30] = corrupt(ps[30])
    stream = b"".join(ps) + encode_frame(b, "lepton2")
    asm = FrameAssembler("lepton2")
    frames = asm.feed(stream)
    assert [f.image.tobytes() for f in frames] == [b.tobytes()]
    c = asm.counters_dict()
    assert c["crc_errors"] == 1
    assert c["dropped_frames"] == 1
    assert c["frames"] == 1


def test_a_bad_packet_0_of_the_next_frame_drops_only_that_frame():
    imgs = [image("lepton3", i) for i in range(3)]
    frames = [packets(encode_frame(im, "lepton3")) for im in imgs]
    frames[1][0] = corrupt(frames[1][0], 3)  # the CRC field itself
    stream = b"".join(b"".join(f) for f in frames)
    out = FrameAssembler("lepton3").feed(stream)
    assert [f.image.tobytes() for f in out] == [imgs[0].tobytes(), imgs[2].tobytes()]


def test_lost_packet_and_out_of_order_packets_drop_the_frame():
    imgs = [image("lepton2", i) for i in range(4)]
    f = [packets(encode_frame(im, "lepton2")) for im in imgs]
    del f[0][10]                                   # lost
    f[1][5], f[1][6] = f[1][6], f[1][5]            # swapped
    f[2].insert(7, f[2][7])                        # duplicated
    stream = b"".join(b"".join(x) for x in f)
    asm = FrameAssembler("lepton2")
    out = asm.feed(stream)
    assert [x.image.tobytes() for x in out] == [imgs[3].tobytes()]
    c = asm.counters_dict()
    assert c["sequence_errors"] == 5  # 9->11; 4->6, 6->5, 5->7; 7->7
    assert c["dropped_frames"] == 3
    assert c["crc_errors"] == 0


def test_truncated_frame_at_the_end_is_kept_until_more_bytes_come():
    img = image("lepton3", 8)
    stream = encode_frame(img, "lepton3")
    asm = FrameAssembler("lepton3")
    assert asm.feed(stream[:150 * PACKET_BYTES + 17]) == []
    assert asm.counters_dict()["dropped_frames"] == 0
    out = asm.feed(stream[150 * PACKET_BYTES + 17:])
    assert np.array_equal(out[0].image, img)


def test_truncated_frame_followed_by_a_new_frame_is_dropped():
    a, b = image("lepton3", 1), image("lepton3", 2)
    stream = encode_frame(a, "lepton3")[:200 * PACKET_BYTES] + encode_frame(b, "lepton3")
    asm = FrameAssembler("lepton3")
    out = asm.feed(stream)
    assert [f.image.tobytes() for f in out] == [b.tobytes()]
    c = asm.counters_dict()
    assert c["dropped_frames"] == 1
    assert c["dropped_segments"] == 4  # segments 1-3 and the partial segment 4


def test_ttt0_segments_between_frames_are_dropped_and_cost_nothing():
    imgs = [image("lepton3", i) for i in range(3)]
    stream = vospi.invalid_segment().join(encode_frame(im, "lepton3") for im in imgs)
    asm = FrameAssembler("lepton3")
    out = asm.feed(vospi.invalid_segment() + stream)
    assert [f.image.tobytes() for f in out] == [im.tobytes() for im in imgs]
    c = asm.counters_dict()
    assert c["dropped_segments"] == 3
    assert c["dropped_frames"] == 0


def test_ttt0_segment_inside_a_frame_drops_the_frame():
    a, b = image("lepton3", 1), image("lepton3", 2)
    first = encode_frame(a, "lepton3")
    stream = first[:120 * PACKET_BYTES] + vospi.invalid_segment() + first[120 * PACKET_BYTES:]
    out = FrameAssembler("lepton3").feed(stream + encode_frame(b, "lepton3"))
    assert [f.image.tobytes() for f in out] == [b.tobytes()]


def test_segments_out_of_order_or_missing_segment_1_give_no_frame():
    img = image("lepton3", 3)
    segs = [encode_frame(img, "lepton3")[i * 60 * PACKET_BYTES:(i + 1) * 60 * PACKET_BYTES]
            for i in range(4)]
    asm = FrameAssembler("lepton3")
    assert asm.feed(segs[1] + segs[2] + segs[3]) == []          # no segment 1
    assert asm.feed(segs[0] + segs[2] + segs[1] + segs[3]) == []  # 1, 3, 2, 4
    assert asm.feed(segs[0] + segs[1] + segs[3]) == []           # 3 missing
    out = asm.feed(b"".join(segs))
    assert len(out) == 1 and np.array_equal(out[0].image, img)


def test_misaligned_stream_is_hunted_back_into_step():
    imgs = [image("lepton3", i) for i in range(3)]
    f0 = encode_frame(imgs[0], "lepton3")
    stream = (f0[:100 * PACKET_BYTES + 33]  # a frame cut in the middle of a packet
              + vospi.discard_packets(4) + encode_frame(imgs[1], "lepton3")
              + encode_frame(imgs[2], "lepton3"))
    asm = FrameAssembler("lepton3")
    out = feed_all(asm, stream, chunk=1000)
    assert [f.image.tobytes() for f in out] == [imgs[1].tobytes(), imgs[2].tobytes()]
    c = asm.counters_dict()
    assert c["realigns"] >= 1 and c["skipped_bytes"] > 0


def test_garbage_between_frames_then_frames_again():
    imgs = [image("lepton2", i) for i in range(2)]
    garbage = RNG.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    stream = encode_frame(imgs[0], "lepton2") + garbage + encode_frame(imgs[1], "lepton2")
    for chunk in (0, 7, 164, 999):
        out = feed_all(FrameAssembler("lepton2"), stream, chunk)
        assert [f.image.tobytes() for f in out] == [im.tobytes() for im in imgs], chunk


# The 86 random bytes (after 5 discards) in front of the clean Lepton 2 footer frame that
# `scripts/fuzz_vospi.py --packets 600000 --seed 2` lost; the first byte (0x5F) has the discard nibble.
FUZZ_SEED2_GARBAGE = bytes.fromhex(
    "5feb0f28c918d837d14fa8d3126b56ae68801fb2c07817bc788d04087fca5efe8ba28976695179e54a23afbc"
    "5b45a9b65c2be491dbe2362e9b11b4ac96dab9d20e363354b2fa4197ce59ba03f4c8e8114123e1360ddf")


@pytest.mark.parametrize("chunk", [0, 1, 164, 1000])
def test_frame_whose_start_hides_in_a_misaligned_slot_that_looks_like_a_discard(chunk):
    # 5 discards, 86 garbage bytes, a frame. Read 164 bytes at a time, the slot after the discards
    # is the garbage plus packet 0's first 78 bytes; it starts with 0x5F, so it looks like a
    # discard. The next slots (inside packets 0 and 1) fail their CRC. The frame's packet 0 starts
    # inside that discard-looking slot, so the hunt must look from there, not from the first bad
    # slot (which lost packet 0 and with it the frame).
    imgs = [image("lepton2", i) for i in range(2)]
    stream = (vospi.discard_packets(5) + FUZZ_SEED2_GARBAGE
              + encode_frame(imgs[0], "lepton2", "footer")
              + encode_frame(imgs[1], "lepton2", "footer"))
    asm = FrameAssembler("lepton2", "footer")
    out = feed_all(asm, stream, chunk)
    assert [f.image.tobytes() for f in out] == [im.tobytes() for im in imgs]
    c = asm.counters_dict()
    assert c["realigns"] == 1 and c["frames"] == 2 and c["dropped_frames"] == 0


@pytest.mark.parametrize("sensor", ["lepton2", "lepton3"])
@pytest.mark.parametrize("chunk", [0, 1, 164, 61 * 164])
@pytest.mark.parametrize("lost", [1, 2])
@pytest.mark.parametrize("where", [1, 3])
def test_bytes_lost_among_discards_cost_no_frame(sensor, chunk, lost, where):
    # The stream is mostly discards, so that is where a slip usually lands. With one byte
    # missing every later slot starts one byte late: the last discard's slot starts at its 0xFF
    # (a discard to look at) and holds packet 0's first byte, so packet 0 begins in a slot read
    # as a discard and the hunt has to go back into it. With two bytes missing that slot is the
    # discard's zero CRC and payload plus packet 0's ID 00 00: an all-zero packet 0 with a valid
    # CRC, which must not count as the stream being in step.
    imgs = [image(sensor, i) for i in range(2)]
    discards = vospi.discard_packets(4)
    cut = where * PACKET_BYTES
    stream = (discards[:cut] + discards[cut + lost:]
              + encode_frame(imgs[0], sensor) + vospi.discard_packets(3)
              + encode_frame(imgs[1], sensor))
    asm = FrameAssembler(sensor)
    out = feed_all(asm, stream, chunk)
    assert [f.image.tobytes() for f in out] == [im.tobytes() for im in imgs]
    assert asm.counters_dict()["realigns"] == 1


@pytest.mark.parametrize("chunk", [0, 1, 164, 4096])
def test_garbage_then_zero_discards_make_no_packet_that_hides_the_frame(chunk):
    # fuzz_vospi --packets 1e7 --seed 1 (after the fix above): a frame, 162 garbage bytes, two
    # zero-filled discards, a frame. Read in step with the first frame, the slot before the
    # second frame is the last discard's 162 zeros and packet 0's ID: an all-zero packet 0 with a
    # valid CRC. The hunt that follows must look back past it, or packet 0 and its frame are lost.
    imgs = [image("lepton2", i) for i in range(3)]
    garbage = np.random.default_rng(3).integers(0, 256, 162, dtype=np.uint8).tobytes()
    assert garbage[0] & 0x0F != 0x0F
    stream = (encode_frame(imgs[0], "lepton2") + garbage + vospi.discard_packets(2)
              + encode_frame(imgs[1], "lepton2") + encode_frame(imgs[2], "lepton2"))
    out = feed_all(FrameAssembler("lepton2"), stream, chunk)
    assert [f.image.tobytes() for f in out] == [im.tobytes() for im in imgs]


@pytest.mark.parametrize("chunk", [0, 1, 164, 4096])
def test_a_packet_cut_short_but_still_good_does_not_hide_the_next_frame(chunk):
    # fuzz_vospi --packets 1e7 --seed 5: a Lepton 2 footer frame whose last packet (telemetry
    # row C, zeros at its end) lost its last 2 bytes, then the next frame. Read in step, that
    # packet's slot ends with packet 0's ID 00 00, so it is byte for byte the packet sent and
    # good; the slots after it are 2 bytes late. The hunt must start inside it to find packet 0.
    imgs = [image("lepton2", i) for i in range(3)]
    cut = encode_frame(imgs[0], "lepton2", "footer")[:-2]
    stream = (cut + encode_frame(imgs[1], "lepton2", "footer")
              + encode_frame(imgs[2], "lepton2", "footer"))
    asm = FrameAssembler("lepton2", "footer")
    out = feed_all(asm, stream, chunk)
    assert [f.image.tobytes() for f in out] == [im.tobytes() for im in imgs]
    assert asm.counters_dict()["realigns"] == 1


@pytest.mark.parametrize("chunk", [0, 1, 164, 1000])
def test_hunt_takes_no_all_zero_packet_made_of_a_discard_and_a_cut_packet_0(chunk):
    # A zero-filled discard, then packet 0 cut short after its ID (00 00), then packets 1..59:
    # the discard's last 162 bytes and that ID are an all-zero "packet 0" with a valid CRC, and the
    # real packet 1 follows it. The hunt, which looks back into the discard, must not take it:
    # it would make a frame with a zero row that was never sent.
    imgs = [image("lepton2", i) for i in range(2)]
    cut = packets(encode_frame(imgs[0], "lepton2"))
    stream = (vospi.discard_packets(2) + cut[0][:2] + b"".join(cut[1:])
              + vospi.discard_packets(2) + encode_frame(imgs[1], "lepton2"))
    asm = FrameAssembler("lepton2")
    out = feed_all(asm, stream, chunk)
    assert [f.image.tobytes() for f in out] == [imgs[1].tobytes()]
    assert asm.counters_dict()["realigns"] >= 1


def test_all_discards_or_nothing_at_all():
    asm = FrameAssembler("lepton3")
    assert asm.feed(b"") == []
    assert asm.feed(vospi.discard_packets(100)) == []
    assert asm.counters_dict()["discards"] == 100
    assert not asm.lost_sync


# ---------------------------------------------------------------- sync

def test_lost_sync_after_a_long_stretch_without_frames_and_resync_clears_it():
    asm = FrameAssembler("lepton3")
    garbage = RNG.integers(0, 256, 4 * 240 * PACKET_BYTES + 1000, dtype=np.uint8).tobytes()
    asm.feed(garbage)
    assert asm.lost_sync
    asm.resync()
    assert not asm.lost_sync
    assert asm.counters.resyncs == 1
    img = image("lepton3", 1)
    out = asm.feed(encode_frame(img, "lepton3"))
    assert np.array_equal(out[0].image, img)


def test_frames_keep_lost_sync_false():
    asm = FrameAssembler("lepton2")
    for i in range(20):
        asm.feed(encode_frame(image("lepton2", i), "lepton2"))
    assert not asm.lost_sync


def test_resync_forgets_a_partial_frame():
    img = image("lepton3", 2)
    stream = encode_frame(img, "lepton3")
    asm = FrameAssembler("lepton3")
    asm.feed(stream[:100 * PACKET_BYTES + 5])
    asm.resync()
    assert asm.feed(stream[100 * PACKET_BYTES + 5:]) == []
    assert len(asm.feed(stream)) == 1


# ---------------------------------------------------------------- settings that do not match

@pytest.mark.parametrize("stream_as, read_as, expected", [
    (("lepton3", "off"), ("lepton2", "off"), "set [capture] sensor = lepton3"),
    (("lepton2", "off"), ("lepton3", "off"), "set [capture] sensor = lepton2"),
    (("lepton2", "footer"), ("lepton2", "off"), "set [capture] telemetry = header or footer"),
    (("lepton3", "header"), ("lepton3", "off"), "set [capture] telemetry = header or footer"),
    (("lepton2", "off"), ("lepton2", "header"), "check that [capture] sensor and telemetry"),
    (("lepton3", "off"), ("lepton3", "off"), None),
])
def test_hint_names_the_setting_that_does_not_match_the_camera(stream_as, read_as, expected):
    sensor, telemetry = stream_as
    stream = b"".join(encode_frame(image(sensor, i), sensor, telemetry) for i in range(12))
    asm = FrameAssembler(*read_as)
    asm.feed(stream)
    if expected is None:
        assert asm.hint is None
    else:
        assert expected in asm.hint


@pytest.mark.parametrize("sensor", ["lepton2", "lepton3"])
@pytest.mark.parametrize("lost_in", ["discard", "frame"])
def test_two_bytes_lost_then_a_packet_0_cut_after_its_id_make_no_false_frame(sensor, lost_in):
    # 2 bytes lost (in a zero-filled discard, or near the end of the frame before it), then a
    # packet 0 cut after its 2 ID bytes: 164 bytes lost in all, so the packets after it are in step
    # again and no CRC fails, and the discard's last 162 zeros plus that ID read as an all-zero
    # packet 0 with a valid CRC. Taken, it would make a frame of the cut one's rows with its first
    # packet zeros instead. The frames on either side still come whole.
    first, cut, last = (image(sensor, seed) for seed in (1, 2, 3))
    stream = bytearray(encode_frame(first, sensor) + vospi.discard_packets(2))
    at = len(stream) - (PACKET_BYTES + 40 if lost_in == "discard" else 2 * PACKET_BYTES + 50)
    del stream[at:at + 2]
    damaged = encode_frame(cut, sensor)
    stream += damaged[:2] + damaged[PACKET_BYTES:] + encode_frame(last, sensor)
    asm = FrameAssembler(sensor)
    out = asm.feed(bytes(stream))
    want = ([first] if lost_in == "discard" else []) + [last]
    assert [f.image.tobytes() for f in out] == [im.tobytes() for im in want]
    assert asm.counters.crc_errors >= 1  # the all-zero packet, counted as one whose CRC is no proof
