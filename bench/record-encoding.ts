// kafkajs' record encoding with its own buffer growth (Buffer.alloc: zero-filled) against the
// growth src/kafkajs-patch.ts puts in place (Buffer.allocUnsafe), in one process, alternating
// rounds so that both see the same machine. A round encodes transactional record batches of 100
// records the size of sealed conversations (1, 5 and 20 KB values), as a punctuation that seals
// 100 conversations sends them; prints ms per batch and the ratio.
//   node dist/bench/record-encoding.js [rounds]
import path from 'node:path';
import { setEncoderGrowth, uninitializedGrowth, zeroFillingGrowth } from '../src/kafkajs-patch';
import { fmtRatio, quantile } from './lib';

const root = path.dirname(require.resolve('kafkajs/package.json'));
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { RecordBatch } = require(path.join(root, 'src/protocol/recordBatch/v0')) as { RecordBatch: (a: object) => Promise<{ buffer: Buffer }> };
// eslint-disable-next-line @typescript-eslint/no-require-imports
const Record = require(path.join(root, 'src/protocol/recordBatch/record/v0')) as (a: object) => unknown;

async function batchMs(values: Buffer[], batches: number): Promise<number> {
  const t = process.hrtime.bigint();
  for (let b = 0; b < batches; b++) {
    const records = values.map((value, i) => Record({ offsetDelta: i, timestampDelta: 0, key: Buffer.from(`chat-${i}`), value, headers: {} }));
    await RecordBatch({ compression: 0, firstOffset: '0', firstTimestamp: 0, maxTimestamp: 0, producerId: 1, producerEpoch: 0, firstSequence: 0, transactional: true, records });
  }
  return Number(process.hrtime.bigint() - t) / 1e6 / batches;
}

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 15);
  for (const size of [1_000, 5_000, 20_000]) {
    const values = Array.from({ length: 100 }, (_, i) => Buffer.alloc(size, i));
    const times = { kafkajs: [] as number[], patched: [] as number[] };
    for (let r = 0; r < rounds + 2; r++) {
      for (const [name, growth] of [['kafkajs', zeroFillingGrowth], ['patched', uninitializedGrowth]] as const) {
        setEncoderGrowth(growth);
        const ms = await batchMs(values, 40);
        if (r >= 2) times[name].push(ms); // two warm-up rounds
      }
    }
    setEncoderGrowth(uninitializedGrowth);
    const a = quantile(times.kafkajs, 0.5);
    const b = quantile(times.patched, 0.5);
    console.log(`${String(size).padStart(6)} B values: kafkajs ${a.toFixed(2)} ms, patched ${b.toFixed(2)} ms per 100-record batch (medians of ${rounds}); patched/kafkajs ${fmtRatio(b / a)}`);
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
