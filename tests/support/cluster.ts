// A local three-node Kafka cluster (infra/cluster.sh) of a test's own: its own data directory and
// free loopback ports, so it runs beside the single broker of infra:up. Nodes are started,
// killed (SIGKILL) and stopped one by one; the quorum leader and partition leaders are looked up.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import { ROOT, sleep } from './harness';

const SCRIPT = path.join(ROOT, 'infra/cluster.sh');

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** A base port such that base..base+n-1 and base+100..base+100+n-1 are free on 127.0.0.1. */
async function freePortRange(n: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 30_000 + Math.floor(Math.random() * 2500) * 10;
    const ports = Array.from({ length: n }, (_, i) => [base + i, base + 100 + i]).flat();
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return base;
  }
  throw new Error('no free port range for a test cluster');
}

export class LocalCluster {
  readonly brokers: string[];
  private constructor(readonly home: string, readonly port: number, readonly nodes: number, readonly heap: string) {
    this.brokers = Array.from({ length: nodes }, (_, i) => `127.0.0.1:${port + i}`);
  }

  /** A cluster of `nodes` nodes in a fresh temporary directory, on free ports (not started). */
  static async create(name: string, nodes = 3, heap = '512m'): Promise<LocalCluster> {
    const home = mkdtempSync(path.join(os.tmpdir(), `chatstats-${name}-`));
    return new LocalCluster(home, await freePortRange(nodes), nodes, heap);
  }

  private env(): NodeJS.ProcessEnv {
    return {
      ...process.env, INFRA_BROKERS: String(this.nodes), KAFKA_CLUSTER_HOME: this.home, KAFKA_CLUSTER_PORT: String(this.port),
      KAFKA_CLUSTER_CONTROLLER_PORT: String(this.port + 100), KAFKA_CLUSTER_HEAP: this.heap,
    };
  }

  private script(...args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile('bash', [SCRIPT, ...args], { env: this.env(), timeout: 240_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`infra/cluster.sh ${args.join(' ')} failed: ${err.message}\n${stdout}${stderr}`));
        else resolve(stdout + stderr);
      });
    });
  }

  /** Starts every node and waits until all brokers are registered; returns the script's output. */
  up(): Promise<string> { return this.script('up'); }

  /** Stops every node (SIGTERM, then SIGKILL after 30 s) and removes the data directory. */
  async down(): Promise<void> {
    await this.script('down').catch(() => undefined);
    rmSync(this.home, { recursive: true, force: true });
  }

  /** Starts a stopped or killed node and waits until it answers. */
  async startNode(node: number): Promise<void> { await this.script('start-node', String(node)); }

  /** Stops a node gracefully (SIGTERM: controlled shutdown). */
  async stopNode(node: number): Promise<void> { await this.script('stop-node', String(node)); }

  pid(node: number): number | null {
    try { return Number(readFileSync(path.join(this.home, `node-${node}`, 'kafka.pid'), 'utf8').trim()); } catch { return null; }
  }

  /** SIGKILLs a node's JVM and waits until the process is gone. */
  async killNode(node: number): Promise<void> {
    const pid = this.pid(node);
    if (pid === null) throw new Error(`node ${node} has no pid file`);
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 100; i++) {
      try { process.kill(pid, 0); } catch { break; }
      await sleep(50);
    }
    rmSync(path.join(this.home, `node-${node}`, 'kafka.pid'), { force: true });
  }

  alive(node: number): boolean {
    const pid = this.pid(node);
    if (pid === null) return false;
    try { process.kill(pid, 0); return true; } catch { return false; }
  }

  /**
   * The KRaft quorum's leader as the live nodes last recorded it (each voter keeps its view in
   * __cluster_metadata-0/quorum-state): the view of the highest epoch. null while none is known.
   */
  quorumLeader(): { leader: number; epoch: number } | null {
    let best: { leader: number; epoch: number } | null = null;
    for (let n = 1; n <= this.nodes; n++) {
      if (!this.alive(n)) continue;
      try {
        const s = JSON.parse(readFileSync(path.join(this.home, `node-${n}`, 'data/__cluster_metadata-0/quorum-state'), 'utf8')) as { leaderId: number; leaderEpoch: number };
        if (s.leaderId >= 0 && (best === null || s.leaderEpoch > best.epoch)) best = { leader: s.leaderId, epoch: s.leaderEpoch };
      } catch { /* being rewritten */ }
    }
    return best;
  }

  /** The node's broker log (server.log), for diagnostics. */
  log(node: number): string {
    try { return readFileSync(path.join(this.home, `node-${node}`, 'logs/server.log'), 'utf8'); } catch { return ''; }
  }

  kafka(clientId = 'cluster-test'): Kafka {
    return new Kafka({ clientId, brokers: this.brokers, logLevel: logLevel.NOTHING });
  }
}

/** Partition → leader node of a topic (from metadata; -1 while leaderless). */
export async function partitionLeaders(admin: Admin, topic: string): Promise<Map<number, number>> {
  const md = await admin.fetchTopicMetadata({ topics: [topic] });
  return new Map(md.topics[0]!.partitions.map((p) => [p.partitionId, p.leader]));
}

/**
 * Waits until every partition of every topic (internal ones included) has its full replica set in
 * sync, i.e. a restarted node has caught up everywhere. Returns how long that took.
 */
export async function waitFullIsr(admin: Admin, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  let last = '';
  for (;;) {
    try {
      const topics = await admin.listTopics();
      const md = await admin.fetchTopicMetadata({ topics });
      const short = md.topics.flatMap((t) => t.partitions.filter((p) => p.isr.length < p.replicas.length).map((p) => `${t.name}/${p.partitionId} isr ${p.isr.join(',')}`));
      if (short.length === 0) return Date.now() - t0;
      last = `${short.length} partitions short, e.g. ${short.slice(0, 3).join('; ')}`;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() - t0 > timeoutMs) throw new Error(`replicas not all in sync after ${timeoutMs} ms: ${last}`);
    await sleep(250);
  }
}
