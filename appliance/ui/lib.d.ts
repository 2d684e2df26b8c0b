// Types of lib.js (the browser's plain ES module) for the TypeScript that imports it: the unit tests.
export function fmtBytes(n: number | null | undefined): string;
export function fmtRate(mbps: number | null | undefined): string;
export function fmtDuration(seconds: number | null | undefined): string;
export function fmtAgo(iso: string | null | undefined, now: number): string;
export function fmtTime(iso: string | null | undefined): string;

export interface ImageSizes { diskSize: number; dataBlocks: number; storedBytes: number }
export interface Savings { dataBytes: number | null; storedBytes: number; savedBytes: number; savedPercent: number; ratio: number | null }
export function dedupSavings(img: ImageSizes, blockSize: number | null | undefined): Savings;

export interface InventorySummary { model: string; firmware: string; cpu: string; memory: string; disks: string[] }
export function inventorySummary(inv: unknown): InventorySummary;

export function parseProgressDetail(detail: string | null | undefined): { done: number; total: number } | null;
export function percent(done: number, total: number | null | undefined): number;

export class RateMeter {
  constructor(minGapMs?: number);
  readonly minGapMs: number;
  push(tMs: number, bytes: number): number | null;
}

export interface SseEvent { event: string; data: string; id?: string }
export class SseParser {
  feed(text: string): SseEvent[];
}

export interface TaskForm {
  kind: 'deploy' | 'capture'; image?: string; target?: 'group' | 'machines'; group?: string; machines?: string[];
  when?: 'now' | 'at' | 'cron'; at?: string; cron?: string; rule?: 'all' | 'deadline' | 'grace'; deadline?: string; grace?: string | number;
  retries?: string | number; wol?: boolean; delta?: boolean; grow?: boolean;
}
export interface TaskBody {
  kind: string; image?: string; machines?: string[]; group?: string; at?: string; cron?: string;
  startRule?: StartRule; retries?: number; wol?: boolean; delta?: boolean; grow?: boolean;
}
export function taskBody(f: TaskForm): TaskBody;
export type StartRule = { kind: 'all' } | { kind: 'deadline'; at: string } | { kind: 'grace'; seconds: number };
export function startRule(f: { rule?: string; deadline?: string; grace?: string | number }): StartRule;
export function describeRule(r: { kind: string; at?: string; seconds?: number } | null | undefined): string;

export function niceTicks(max: number, count?: number): { max: number; ticks: number[] };
export interface PlotOptions { width: number; height: number; pad: { left: number; right: number; top: number; bottom: number }; nowMs: number; windowMs: number }
export interface PlotLayout {
  yTicks: { y: number; label: string }[]; xTicks: { x: number; label: string }[];
  lines: { key: string; points: [number, number][] }[]; t0: number; t1: number;
}
export function plotLayout(series: { key: string; points: { t: number; v: number }[] }[], o: PlotOptions): PlotLayout;
export function sumSeries(series: { key: string; points: { t: number; v: number }[] }[]): { t: number; v: number }[];
