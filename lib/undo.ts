import { addCleanupFailures } from './errors';

/**
 * A rollback scope (Incus's `revert`): each step of a multi-step operation
 * registers how to undo itself; on failure the steps are undone in reverse
 * order, on success they are forgotten. Undo failures are recorded on the
 * original error (its cleanupFailures), never allowed to hide it.
 */
export class UndoStack {
  private steps: { label: string; fn: () => void | Promise<void> }[] = [];

  add(label: string, fn: () => void | Promise<void>): void {
    this.steps.push({ label, fn });
  }

  /** Forget every registered step: the operation succeeded. */
  commit(): void {
    this.steps = [];
  }

  /** Undo in reverse order; returns the labels of steps that failed to undo. */
  async unwind(): Promise<string[]> {
    const failed: string[] = [];
    while (this.steps.length > 0) {
      const step = this.steps.pop()!;
      try {
        await step.fn();
      } catch (err) {
        failed.push(`${step.label}: ${(err as Error).message}`);
      }
    }
    return failed;
  }
}

/** Run `body` with an undo stack that unwinds if it throws. */
export async function withUndo<T>(body: (undo: UndoStack) => Promise<T>): Promise<T> {
  const undo = new UndoStack();
  try {
    const result = await body(undo);
    undo.commit();
    return result;
  } catch (err) {
    addCleanupFailures(err, await undo.unwind());
    throw err;
  }
}
