// `chatstats eval-boundaries [--links OUT] [--model FILE] LOG...`: runs the thread model
// (src/boundaries, the code the tracker runs) over logs in the IRC disentanglement corpus format and
// scores it against their annotation, beside the 90-minute time-gap rule and all-singletons.
import { writeFileSync } from 'node:fs';
import { Command } from 'commander';
import { readLog, firstAnnotated, type CorpusLog } from '../boundaries/corpus';
import { clusteringsOf, gapParents, modelParents, singletonParents, GAP_RULE_MS, type Parents } from '../boundaries/evaluate';
import { scoreClusterings, type ClusteringPair, type Scores } from '../boundaries/metrics';
import { DEFAULT_MODEL_PATH, loadThreadModel } from '../boundaries/model';
import { fail, printTable } from './output';

const METHODS = ['model', 'gap-90min', 'singletons'] as const;
type Method = (typeof METHODS)[number];

/** Lines of the links file start here when a log has no annotation. */
const DEFAULT_FIRST_LINE = 1000;

export function evalBoundariesCommand(): Command {
  return new Command('eval-boundaries')
    .description('score the thread model on annotated IRC logs (corpus format): 1 - scaled VI, adjusted Rand index, matched-cluster P/R/F, beside a 90-minute gap and all-singletons')
    .argument('<log...>', 'NAME.ascii.txt files (NAME.annotation.txt beside each is the gold standard)')
    .option('--links <file>', 'write the model\'s links, one line per message from the first annotated line (else line 1000) on: NAME:INDEX PARENT -')
    .option('--model <file>', `thread model file (default: ${DEFAULT_MODEL_PATH})`)
    .option('--json', 'print JSON')
    .addHelpText('after', `
Each log is one chat: sender from <nick>, sent_at from the date in NAME (or on
the line) and [HH:MM]; "===" system lines are no messages (each its own
conversation). Only the lines the annotation covers are scored, as the corpus'
tools do: the links of lines from the first annotated one on, conversations as
their connected components. "overall" pools all files' conversations.
Matched clusters: a gold conversation of 2+ messages counts only when predicted
exactly; singletons are left out of precision and recall.`)
    .action((logs: string[], o: { links?: string; model?: string; json?: boolean }) => {
      let model;
      try {
        model = loadThreadModel(o.model ?? DEFAULT_MODEL_PATH);
      } catch (e) {
        fail(`cannot load the thread model: ${(e as Error).message}`);
        return;
      }
      let parsed: CorpusLog[];
      try {
        parsed = logs.map((f) => readLog(f));
      } catch (e) {
        fail((e as Error).message);
        return;
      }
      const linkLines: string[] = [];
      const pairs: Record<Method, ClusteringPair[]> = { 'model': [], 'gap-90min': [], 'singletons': [] };
      const perFile: { file: string; messages: number; scores: Record<Method, Scores> | null }[] = [];
      for (const log of parsed) {
        const parents: Record<Method, Parents> = {
          'model': modelParents(log, model),
          'gap-90min': gapParents(log, GAP_RULE_MS),
          'singletons': singletonParents(log),
        };
        const first = log.gold ? firstAnnotated(log.gold) : DEFAULT_FIRST_LINE;
        for (let i = first; i < log.lines.length; i++) linkLines.push(`${log.name}:${i} ${parents.model[i]} -`);
        if (!log.gold) { perFile.push({ file: log.name, messages: log.lines.length, scores: null }); continue; }
        const scores = {} as Record<Method, Scores>;
        for (const m of METHODS) {
          const pair = clusteringsOf(log, parents[m]);
          pairs[m].push(pair);
          scores[m] = scoreClusterings([pair]);
        }
        perFile.push({ file: log.name, messages: scores.model.messages, scores });
      }
      if (o.links) writeFileSync(o.links, linkLines.join('\n') + (linkLines.length > 0 ? '\n' : ''));
      const overall = pairs.model.length > 0
        ? Object.fromEntries(METHODS.map((m) => [m, scoreClusterings(pairs[m])])) as Record<Method, Scores>
        : null;
      if (o.json) {
        console.log(JSON.stringify({ model: o.model ?? DEFAULT_MODEL_PATH, files: perFile, overall }, null, 2));
        return;
      }
      const f2 = (v: number) => v.toFixed(2);
      const rows: unknown[][] = [];
      const addRows = (file: string, s: Record<Method, Scores>) => {
        for (const m of METHODS) {
          const x = s[m];
          rows.push([file, m, x.messages, `${x.goldConversations}/${x.predictedConversations}`, f2(x.oneMinusVI), f2(x.ari), f2(x.precision), f2(x.recall), f2(x.f)]);
        }
      };
      for (const pf of perFile) {
        if (pf.scores) addRows(pf.file, pf.scores);
        else rows.push([pf.file, 'model', pf.messages, '-', 'no annotation', '', '', '', '']);
      }
      if (overall) addRows('overall', overall);
      printTable(['file', 'method', 'messages', 'conv gold/pred', '1-VI', 'ARI', 'P', 'R', 'F'], rows);
      if (o.links) console.log(`\nlinks written to ${o.links}`);
    });
}
