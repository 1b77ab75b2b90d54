import assert from 'node:assert/strict';
import { test } from 'node:test';
import { getDriver } from '../../storage/registry';

/**
 * The VM lane's storage tests (scripts/vm-lane/run boots a kernel with
 * device-mapper): the storage conformance suite, with the drivers the host
 * lanes already cover (btrfs, zfs) switched off so the lvm rows are what runs.
 * dir stays on: the suite's bad-input cases use it, and it is fast.
 *
 * On the host this file only says where it runs: it needs the guest.
 */

const inGuest = process.env.TSVZ_VM_LANE_GUEST === '1';
const HOST_LANES = ['btrfs', 'zfs'];

if (!inGuest) {
  test('lvm storage conformance', { skip: 'runs inside the VM lane: npm run test:vm' }, () => {});
} else {
  test('lvm is usable in the VM (else its conformance rows would be skipped, not failed)', async () => {
    assert.deepEqual(await getDriver('lvm').missing(), []);
  });
  for (const name of HOST_LANES) {
    const driver = getDriver(name);
    // The conformance suite reads missing() once, at load, to decide what to skip.
    driver.missing = async () => ['covered by the host lanes, not the VM lane'];
  }
  // After the patch: a static import would load the suite first.
   
  require('../integration/storage-conformance.test');
}
