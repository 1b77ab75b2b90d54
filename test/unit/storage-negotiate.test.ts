import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DriverCapabilities, SendFormat } from '../../storage/driver';
import { canSendIncremental, negotiateFormat } from '../../storage/negotiate';
import { getDriver } from '../../storage/registry';

const caps = (...sendFormats: SendFormat[]): DriverCapabilities => ({
  atomicSnapshot: true,
  cowClone: true,
  incrementalSend: sendFormats.some((f) => f !== 'tar'),
  rollbackToAny: true,
  sendFormats,
});

test('same native format on both sides: use it', () => {
  assert.equal(negotiateFormat(caps('btrfs', 'tar'), caps('btrfs', 'tar')), 'btrfs');
  assert.equal(negotiateFormat(caps('zfs', 'tar'), caps('zfs', 'tar')), 'zfs');
});

test('no common native format: the universal tar stream', () => {
  assert.equal(negotiateFormat(caps('btrfs', 'tar'), caps('zfs', 'tar')), 'tar');
  assert.equal(negotiateFormat(caps('zfs', 'tar'), caps('tar')), 'tar');
  assert.equal(negotiateFormat(caps('tar'), caps('btrfs', 'tar')), 'tar');
  assert.equal(negotiateFormat(caps(), caps()), 'tar');
});

test("the sender's preference order wins", () => {
  assert.equal(negotiateFormat(caps('zfs', 'btrfs', 'tar'), caps('btrfs', 'zfs', 'tar')), 'zfs');
  assert.equal(negotiateFormat(caps('btrfs', 'zfs', 'tar'), caps('zfs', 'btrfs', 'tar')), 'btrfs');
});

test('the registered drivers negotiate as the issue describes', () => {
  const c = (name: string) => getDriver(name).capabilities;
  assert.equal(negotiateFormat(c('btrfs'), c('btrfs')), 'btrfs');
  assert.equal(negotiateFormat(c('zfs'), c('zfs')), 'zfs');
  for (const [a, b] of [['btrfs', 'dir'], ['zfs', 'btrfs'], ['dir', 'zfs'], ['lvm', 'lvm'], ['dir', 'dir'], ['lvm', 'btrfs']]) {
    assert.equal(negotiateFormat(c(a), c(b)), 'tar', `${a} -> ${b}`);
  }
  for (const name of ['dir', 'btrfs', 'zfs', 'lvm']) assert.equal(c(name).sendFormats.at(-1), 'tar', `${name} ends with tar`);
});

test('incremental only over a native format of a driver that can', () => {
  assert.equal(canSendIncremental(getDriver('btrfs').capabilities, 'btrfs'), true);
  assert.equal(canSendIncremental(getDriver('btrfs').capabilities, 'tar'), false);
  assert.equal(canSendIncremental(getDriver('zfs').capabilities, 'zfs'), true);
  assert.equal(canSendIncremental(getDriver('dir').capabilities, 'tar'), false);
  assert.equal(canSendIncremental(getDriver('lvm').capabilities, 'tar'), false);
});
