// The browser peer's page: joins with livekit-client, publishes a tone or the microphone, plays
// every remote voice through an <audio> element (to the PulseAudio sink Chromium was given) and
// reports what it hears. `window.report` is the Node driver's (peer.mjs).

import {
  ExternalE2EEKeyProvider,
  Room,
  RoomEvent,
  Track,
  createLocalAudioTrack,
} from '/livekit-client.mjs';

const RATE = 48000;
let room = null;
let audio = null;
let timer = null;
const listeners = new Map();

function dbfs(value) {
  return 20 * Math.log10(Math.max(value, 1e-10));
}

// The peak level of a sine at `hz` (a Hann-windowed Goertzel), as the Rust and Python oracles
// measure it.
function toneDbfs(samples, rate, hz) {
  let re = 0;
  let im = 0;
  let weights = 0;
  const n = samples.length;
  for (let i = 0; i < n; i += 1) {
    const w = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (n - 1));
    const phase = (2 * Math.PI * hz * i) / rate;
    re += samples[i] * w * Math.cos(phase);
    im -= samples[i] * w * Math.sin(phase);
    weights += w;
  }
  return dbfs((2 * Math.hypot(re, im)) / weights);
}

function dominantHz(analyser, rate) {
  const bins = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(bins);
  let best = 1;
  for (let i = 2; i < bins.length - 1; i += 1) {
    if (bins[i] > bins[best]) best = i;
  }
  // A parabola through the peak and its neighbours places it between bins.
  const [a, b, c] = [bins[best - 1], bins[best], bins[best + 1]];
  const offset = a - 2 * b + c === 0 ? 0 : (0.5 * (a - c)) / (a - 2 * b + c);
  return ((best + offset) * rate) / analyser.fftSize;
}

function listen(context, track, identity, hz) {
  const element = track.attach();
  document.body.appendChild(element);
  const analyser = context.createAnalyser();
  analyser.fftSize = 16384;
  analyser.smoothingTimeConstant = 0;
  context.createMediaStreamSource(new MediaStream([track.mediaStreamTrack])).connect(analyser);
  listeners.set(identity, { analyser, element, hz });
}

function reportHeard(context) {
  for (const [identity, { analyser, hz }] of listeners) {
    const samples = new Float32Array(analyser.fftSize);
    analyser.getFloatTimeDomainData(samples);
    const power = samples.reduce((sum, sample) => sum + sample * sample, 0) / samples.length;
    const heard = {
      event: 'heard',
      identity,
      rms_dbfs: dbfs(Math.sqrt(power)),
      dominant_hz: dominantHz(analyser, context.sampleRate),
    };
    if (hz) heard.tone_dbfs = toneDbfs(samples, context.sampleRate, hz);
    window.report(heard);
  }
}

async function microphone(options, context) {
  if (options.tone) {
    // A −12 dBFS sine, as `parley --tone` and the Python peer send.
    const oscillator = new OscillatorNode(context, { frequency: options.tone });
    const gain = new GainNode(context, { gain: 10 ** (-12 / 20) });
    const destination = context.createMediaStreamDestination();
    oscillator.connect(gain).connect(destination);
    oscillator.start();
    return destination.stream.getAudioTracks()[0];
  }
  const constraints = {
    echoCancellation: options.processing,
    noiseSuppression: options.processing,
    autoGainControl: options.processing,
  };
  if (options.inputDevice) {
    // Labels are listed once the page may use the microphone (the driver granted it).
    const devices = await navigator.mediaDevices.enumerateDevices();
    const device = devices.find((d) => d.kind === 'audioinput' && d.label === options.inputDevice);
    if (!device) {
      const inputs = devices.filter((d) => d.kind === 'audioinput').map((d) => d.label);
      throw new Error(`no microphone named ${options.inputDevice} (there are: ${inputs.join(', ')})`);
    }
    constraints.deviceId = { exact: device.deviceId };
  }
  return createLocalAudioTrack(constraints);
}

window.startPeer = async (options) => {
  const context = new AudioContext({ sampleRate: RATE });
  audio = context;
  await context.resume();
  const roomOptions = {};
  if (options.e2eeKey) {
    const keyProvider = new ExternalE2EEKeyProvider();
    roomOptions.e2ee = { keyProvider, worker: new Worker('/e2ee-worker.mjs', { type: 'module' }) };
    room = new Room(roomOptions);
    await keyProvider.setKey(options.e2eeKey);
    await room.setE2EEEnabled(true);
  } else {
    room = new Room(roomOptions);
  }
  room.on(RoomEvent.TrackSubscribed, (track, _publication, participant) => {
    if (track.kind !== Track.Kind.Audio) return;
    listen(context, track, participant.identity, options.listen);
    window.report({ event: 'subscribed', identity: participant.identity });
  });
  room.on(RoomEvent.EncryptionError, (error, participant) => {
    window.report({ event: 'encryption_error', identity: participant?.identity ?? null, message: String(error) });
  });
  await room.connect(options.url, options.token);
  window.report({ event: 'connected', identity: room.localParticipant.identity });
  if (options.tone || options.mic) {
    const track = await microphone(options, context);
    const publication = await room.localParticipant.publishTrack(track, { source: Track.Source.Microphone });
    // The track as the server announced it: `room.isE2EEEnabled` only turns true once the
    // encryption worker answers, which may be after the publish returns.
    window.report({ event: 'published', e2ee: publication.isEncrypted });
  }
  timer = setInterval(() => reportHeard(context), 1000);
};

window.stopPeer = async () => {
  clearInterval(timer);
  if (audio) reportHeard(audio);
  await room?.disconnect();
};
