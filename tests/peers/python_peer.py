"""An independent peer: LiveKit's own Python SDK, to check that Parley interoperates with a
client we did not write.

It joins a room, optionally publishes a sine tone, listens to every remote audio track, and
prints JSON lines: {"event": "joined"}, then at the end one {"event": "heard", ...} per remote
participant with the dominant frequency and the RMS level of its last two seconds.

With --share-bars it also publishes a screen share: 1280x720 colour bars (the colours given,
left to right, over the top two thirds) at 30 fps. With --watch it receives every remote
video at its full-size layer and reports, per participant, {"event": "watched", ...}: the
pictures received, the last one's size, and the colour at the middle of each eighth of its
width, a third of the way down.

usage: python_peer.py --url URL --token TOKEN [--tone HZ] [--share-bars R,G,B;R,G,B;...]
                      [--watch] [--seconds S]
"""

import argparse
import asyncio
import json
import math

import numpy as np
from livekit import rtc

RATE = 48_000
FRAME = RATE // 100
WIDTH, HEIGHT = 1280, 720


def say(**fields):
    print(json.dumps(fields), flush=True)


async def speak(source: rtc.AudioSource, frequency: float, stop: asyncio.Event) -> None:
    amplitude = 10 ** (-12 / 20) * 32767
    phase = 0.0
    step = 2 * math.pi * frequency / RATE
    loop = asyncio.get_running_loop()
    next_tick = loop.time()
    while not stop.is_set():
        frame = rtc.AudioFrame.create(RATE, 1, FRAME)
        samples = np.frombuffer(frame.data, dtype=np.int16)
        samples[:] = (np.sin(phase + step * np.arange(FRAME)) * amplitude).astype(np.int16)
        phase = (phase + step * FRAME) % (2 * math.pi)
        await source.capture_frame(frame)
        next_tick += 0.01
        await asyncio.sleep(max(0.0, next_tick - loop.time()))


def bars_picture(colours: list) -> bytes:
    """Colour bars over the top two thirds, grey below, as RGBA."""
    picture = np.full((HEIGHT, WIDTH, 4), 96, dtype=np.uint8)
    picture[:, :, 3] = 255
    bar_width = WIDTH // len(colours)
    for index, colour in enumerate(colours):
        picture[: HEIGHT * 2 // 3, index * bar_width : (index + 1) * bar_width, :3] = colour
    return picture.tobytes()


async def share(source: rtc.VideoSource, picture: bytes, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    next_tick = loop.time()
    while not stop.is_set():
        source.capture_frame(rtc.VideoFrame(WIDTH, HEIGHT, rtc.VideoBufferType.RGBA, picture))
        next_tick += 1 / 30
        await asyncio.sleep(max(0.0, next_tick - loop.time()))


async def watch(track: rtc.Track, identity: str, seen: dict) -> None:
    stream = rtc.VideoStream(track)
    record = seen.setdefault(identity, {"frames": 0, "last": None})
    async for event in stream:
        record["frames"] += 1
        # A track that ends hands over an 8x8 black picture last: keep the last real one.
        if event.frame.width >= 64:
            record["last"] = event.frame


def describe_picture(record: dict) -> dict:
    frame = record["last"].convert(rtc.VideoBufferType.RGBA)
    pixels = np.frombuffer(frame.data, dtype=np.uint8).reshape(frame.height, frame.width, 4)
    row = frame.height // 3
    bars = [pixels[row, (2 * index + 1) * frame.width // 16, :3].tolist() for index in range(8)]
    return {"frames": record["frames"], "width": frame.width, "height": frame.height, "bars": bars}


async def listen(track: rtc.Track, identity: str, heard: dict) -> None:
    stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
    chunks = heard.setdefault(identity, [])
    async for event in stream:
        chunks.append(np.frombuffer(event.frame.data, dtype=np.int16).copy())


def describe(chunks: list) -> dict:
    samples = np.concatenate(chunks)[-2 * RATE :].astype(np.float64) / 32767
    rms = math.sqrt(float(np.mean(samples**2))) if samples.size else 0.0
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size))) if samples.size else np.zeros(1)
    dominant = float(np.argmax(spectrum[1:]) + 1) * RATE / max(samples.size, 1)
    return {
        "samples": int(samples.size),
        "dominant_hz": dominant,
        "rms_dbfs": 20 * math.log10(rms) if rms > 0 else -200.0,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--tone", type=float)
    parser.add_argument("--share-bars")
    parser.add_argument("--watch", action="store_true")
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()

    room = rtc.Room()
    heard: dict = {}
    seen: dict = {}
    tasks = []

    @room.on("track_subscribed")
    def on_track_subscribed(track, publication, participant):
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            tasks.append(asyncio.ensure_future(listen(track, participant.identity, heard)))
        elif track.kind == rtc.TrackKind.KIND_VIDEO and args.watch:
            publication.set_video_quality(rtc.VideoQuality.VIDEO_QUALITY_HIGH)
            tasks.append(asyncio.ensure_future(watch(track, participant.identity, seen)))

    await room.connect(args.url, args.token)
    say(event="joined", identity=room.local_participant.identity)
    stop = asyncio.Event()
    if args.tone:
        source = rtc.AudioSource(RATE, 1)
        track = rtc.LocalAudioTrack.create_audio_track("tone", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        await room.local_participant.publish_track(track, options)
        tasks.append(asyncio.ensure_future(speak(source, args.tone, stop)))
    if args.share_bars:
        colours = [[int(value) for value in bar.split(",")] for bar in args.share_bars.split(";")]
        screen = rtc.VideoSource(WIDTH, HEIGHT, is_screencast=True)
        track = rtc.LocalVideoTrack.create_video_track("screen", screen)
        options = rtc.TrackPublishOptions(
            source=rtc.TrackSource.SOURCE_SCREENSHARE,
            video_encoding=rtc.VideoEncoding(max_framerate=30, max_bitrate=2_000_000),
        )
        await room.local_participant.publish_track(track, options)
        tasks.append(asyncio.ensure_future(share(screen, bars_picture(colours), stop)))
        say(event="sharing")
    await asyncio.sleep(args.seconds)
    stop.set()
    for identity, chunks in heard.items():
        if chunks:
            say(event="heard", identity=identity, **describe(chunks))
    for identity, record in seen.items():
        if record["last"] is not None:
            say(event="watched", identity=identity, **describe_picture(record))
    await room.disconnect()
    for task in tasks:
        task.cancel()


if __name__ == "__main__":
    asyncio.run(main())
