import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AlreadyExistsError, CommandError, InvalidArgumentError, NotFoundError, NotSupportedError } from '../../lib/errors';
import { isNoSpace, StorageError, storageFailure } from '../../storage/errors';
import { driverNames, getDriver, createPool } from '../../storage/registry';
import { checkSendOptions } from '../../storage/transfer';
import { requireUsable, validatePoolSpec, validateSnapshotName, validateVolumeName } from '../../storage/validate';

const MiB = 1024 ** 2;
const spec = (extra: object) => ({ name: 'p1', driver: 'btrfs', rootDir: '/var/lib/tsvz', ...extra });

test('drivers are registered by name; an unknown one lists the known', async () => {
  assert.deepEqual(driverNames(), ['dir', 'btrfs', 'zfs', 'lvm']);
  for (const name of driverNames()) assert.equal(getDriver(name).name, name);
  assert.throws(() => getDriver('ext4'), (err: Error) => err instanceof InvalidArgumentError && err.message === 'unknown storage driver "ext4" (dir, btrfs, zfs, lvm)');
  await assert.rejects(createPool({ name: 'p', driver: 'xfs', rootDir: '/tmp' }), InvalidArgumentError);
});

test('pool size: a positive whole number of bytes, at least the driver minimum', () => {
  validatePoolSpec(spec({ size: 256 * MiB }), 64 * MiB);
  validatePoolSpec(spec({}), 64 * MiB);
  for (const size of [0, -1, 1.5, NaN, Infinity]) {
    assert.throws(() => validatePoolSpec(spec({ size }), 64 * MiB), /pool size must be greater than zero/, String(size));
  }
  assert.throws(() => validatePoolSpec(spec({ size: 10 * MiB }), 64 * MiB), (err: InvalidArgumentError) => /too small/.test(err.message) && err.hint === 'use at least 64M');
});

test('pool name, root and source', () => {
  for (const name of ['', '../x', 'a/b', '-x', 'x'.repeat(65)]) assert.throws(() => validatePoolSpec(spec({ name }), 0), InvalidArgumentError, name);
  assert.throws(() => validatePoolSpec(spec({ rootDir: 'relative' }), 0), /absolute/);
  assert.throws(() => validatePoolSpec(spec({ source: '  ' }), 0), /source is empty/);
  assert.throws(() => validatePoolSpec(spec({ source: '/mnt/b', size: 128 * MiB }), 0), /either --source or --size/);
  validatePoolSpec(spec({ source: 'vg0', size: 128 * MiB }), 0, { sizeWithSource: true });
});

test('volume and snapshot names follow the container-name rules', () => {
  assert.equal(validateSnapshotName('before-upgrade.1'), 'before-upgrade.1');
  assert.equal(validateVolumeName('p1'), 'p1');
  for (const bad of ['', '.', '..', 'a..b', 'a/b', 'tsvz:hidden', 'a b', '-x', '.hidden', 'x'.repeat(65), 'rollback']) {
    assert.throws(() => validateSnapshotName(bad), (err: Error) => err instanceof InvalidArgumentError && /snapshot name/.test(err.message), bad);
  }
  assert.throws(() => validateVolumeName('a@b'), /volume name/);
});

test('send options: formats the driver speaks; a parent only with a native format', () => {
  const btrfs = getDriver('btrfs');
  checkSendOptions(btrfs, { format: 'btrfs' });
  checkSendOptions(btrfs, { format: 'btrfs', parent: 's1' });
  checkSendOptions(btrfs, { format: 'tar' });
  assert.throws(() => checkSendOptions(btrfs, { format: 'zfs' }), (err: Error) => err instanceof NotSupportedError && /btrfs pools cannot send or receive zfs streams/.test(err.message));
  assert.throws(() => checkSendOptions(btrfs, { format: 'tar', parent: 's1' }), /tar streams are always full/);
  assert.throws(() => checkSendOptions(btrfs, { format: 'btrfs', parent: '../s' }), InvalidArgumentError);
  assert.throws(() => checkSendOptions(getDriver('dir'), { format: 'btrfs' }), NotSupportedError);
});

test('a driver with something missing is refused, saying what', async () => {
  await requireUsable({ name: 'ok', missing: async () => [] });
  await assert.rejects(
    requireUsable({ name: 'lvm', missing: async () => ['no device-mapper on this kernel', 'thin-provisioning-tools not installed'] }),
    (err: Error) => err instanceof NotSupportedError && err.message === 'storage driver lvm cannot be used on this host: no device-mapper on this kernel; thin-provisioning-tools not installed',
  );
});

test('a full pool, in any tool’s words, becomes one clear ENOSPC error', () => {
  const cases = [
    "ERROR: cannot snapshot '/p/volumes/v': No space left on device",
    "cannot create snapshot 'tank/volumes/v@s1': out of space",
    'Cannot create new thin volume, free space in thin pool vg/tsvz-thinpool reached threshold.',
    'Volume group "vg" has insufficient free space (10 extents): 20 required.',
  ];
  for (const stderr of cases) {
    const err = new CommandError('tool', 1, stderr);
    assert.ok(isNoSpace(err), stderr);
    const mapped = storageFailure('snapshot v@s1', 'p1', err);
    assert.ok(mapped instanceof StorageError);
    assert.equal(mapped.code, 'ENOSPC');
    assert.equal(mapped.message, 'cannot snapshot v@s1: pool p1 is full');
    assert.match(mapped.hint ?? '', /free space/);
    assert.equal((mapped as Error).cause, err);
  }
  assert.ok(isNoSpace(Object.assign(new Error('write'), { code: 'ENOSPC' })));
});

test('other failures keep their type, or say which operation and pool failed', () => {
  const notFound = new NotFoundError('snapshot v@x not found');
  assert.equal(storageFailure('roll back v', 'p1', notFound), notFound);
  const exists = new AlreadyExistsError('volume v already exists');
  assert.equal(storageFailure('create volume v', 'p1', exists), exists);
  const failed = storageFailure('clone v to w', 'p1', new CommandError('btrfs subvolume snapshot', 1, 'ERROR: something else'));
  assert.ok(failed instanceof StorageError);
  assert.equal(failed.code, 'ESTORAGE');
  assert.match(failed.message, /^cannot clone v to w in pool p1: btrfs subvolume snapshot failed \(exit 1\): ERROR: something else$/);
});
