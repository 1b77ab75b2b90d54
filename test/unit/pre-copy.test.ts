import assert from 'node:assert/strict';
import { test } from 'node:test';
import { anotherRound, MIN_PAGES } from '../../migrate/pre-copy';
import { MAX_PRE_COPY_ROUNDS } from '../../checkpoint/archive';

test("pre-copy's rounds stop when one writes under 64 pages, writes more than the one before, or after 8 rounds", () => {
  assert.equal(anotherRound([]), true, 'the first round always runs');
  assert.equal(anotherRound([50_000]), true);
  assert.equal(anotherRound([50_000, 2_000]), true, 'shrinking: another round');
  assert.equal(anotherRound([50_000, 2_000, 2_000]), true, 'as many as before: another round');
  assert.equal(anotherRound([50_000, 2_000, 2_001]), false, 'growing: the workload dirties faster than rounds send');
  assert.equal(anotherRound([50_000, MIN_PAGES - 1]), false, 'too little left for a round');
  assert.equal(anotherRound([50_000, MIN_PAGES]), true);
  assert.equal(anotherRound(Array.from({ length: MAX_PRE_COPY_ROUNDS - 1 }, () => 1000)), true);
  assert.equal(anotherRound(Array.from({ length: MAX_PRE_COPY_ROUNDS }, () => 1000)), false, 'at most 8 rounds');
});
