// A preload (`NODE_OPTIONS=--require dist/bench/profile-on-signal.js`) for profiling one moment of
// a long-running process rather than its whole life: SIGUSR2 starts the V8 CPU profiler (0.25 ms
// sampling) for PROFILE_MS (default 1,000 ms), then writes PROFILE_OUT (a .cpuprofile path; `-<n>`
// is added for the n-th signal). `--cpu-prof` cannot do this: it profiles from start to exit.
import inspector from 'node:inspector';
import { writeFileSync } from 'node:fs';

const session = new inspector.Session();
session.connect();
let count = 0;
const post = (method: string, params?: object) => new Promise<unknown>((resolve, reject) => {
  session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res)));
});

process.on('SIGUSR2', () => {
  const out = (process.env.PROFILE_OUT ?? 'profile.cpuprofile').replace(/\.cpuprofile$/, `-${++count}.cpuprofile`);
  void (async () => {
    await post('Profiler.enable');
    await post('Profiler.setSamplingInterval', { interval: 250 });
    await post('Profiler.start');
    await new Promise((r) => setTimeout(r, Number(process.env.PROFILE_MS ?? 1000)));
    const { profile } = (await post('Profiler.stop')) as { profile: unknown };
    writeFileSync(out, JSON.stringify(profile));
  })().catch((err) => process.stderr.write(`profile-on-signal: ${String(err)}\n`));
});
