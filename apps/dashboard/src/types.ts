/**
 * What the coordinator sends the dashboard: the monitoring types live in @chorus/protocol
 * (types only, so nothing of it lands in the page bundle).
 */

export type {
  WorkerState,
  WorkerRow,
  RunEvent,
  StepBreakdown,
  StepRecord,
  EvalRecord,
  Status,
  MonitorMessage,
} from '@chorus/protocol';
import type { StepBreakdown } from '@chorus/protocol';

export const BREAKDOWN_PARTS = [
  { key: 'computeMs', label: 'compute', color: '#3b7dd8' },
  { key: 'transferMs', label: 'transfer', color: '#8bb8f0' },
  { key: 'waitMs', label: 'wait for stragglers', color: '#e8a33d' },
  { key: 'reduceMs', label: 'reduce', color: '#5aa469' },
  { key: 'optimizerMs', label: 'optimizer', color: '#9c6ad0' },
  { key: 'broadcastMs', label: 'broadcast', color: '#d25f6a' },
] as const satisfies readonly { key: keyof StepBreakdown; label: string; color: string }[];
