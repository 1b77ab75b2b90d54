import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { InvalidArgumentError } from '../../lib/errors';
import { hostVethName, parseContainerAddress } from '../../runtime/network';

describe('parseContainerAddress', () => {
  it('accepts an address in 198.18.0.0/15 and defaults the gateway to the first host', () => {
    assert.deepEqual(parseContainerAddress('198.18.0.10/15'), { address: '198.18.0.10', prefix: 15, gateway: '198.18.0.1' });
    assert.deepEqual(parseContainerAddress('198.19.255.254/15'), { address: '198.19.255.254', prefix: 15, gateway: '198.18.0.1' });
    assert.deepEqual(parseContainerAddress('198.18.200.10/24'), { address: '198.18.200.10', prefix: 24, gateway: '198.18.200.1' });
    assert.deepEqual(parseContainerAddress('198.18.7.6/30'), { address: '198.18.7.6', prefix: 30, gateway: '198.18.7.5' });
  });

  it('accepts an explicit gateway inside the subnet', () => {
    assert.deepEqual(parseContainerAddress('198.18.200.10/24', '198.18.200.254'), {
      address: '198.18.200.10',
      prefix: 24,
      gateway: '198.18.200.254',
    });
  });

  it('accepts prefixes 8 and 30, and addresses outside 198.18.0.0/15 (the parser does not restrict)', () => {
    assert.equal(parseContainerAddress('10.1.2.3/8').prefix, 8);
    assert.equal(parseContainerAddress('192.168.1.2/30').prefix, 30);
  });

  const rejects: [string, string | undefined, RegExp][] = [
    ['198.18.0.10', undefined, /not of the form A\.B\.C\.D\/N/],
    ['198.18.0.10/', undefined, /not of the form/],
    ['/15', undefined, /not of the form/],
    ['', undefined, /not of the form/],
    ['198.18.0.10/15/3', undefined, /not of the form/],
    ['198.18.0.10/ 15', undefined, /not of the form/],
    [' 198.18.0.10/15', undefined, /not a valid IPv4/],
    ['198.18.0.256/15', undefined, /not a valid IPv4/],
    ['198.18.0.-1/15', undefined, /not a valid IPv4/],
    ['198.18.0/15', undefined, /not a valid IPv4/],
    ['198.18.0.1.2/15', undefined, /not a valid IPv4/],
    ['198.018.0.10/15', undefined, /not a valid IPv4/],
    ['198.18.0.x/15', undefined, /not a valid IPv4/],
    ['198.18..10/15', undefined, /not a valid IPv4/],
    ['198.18.0.10/33', undefined, /prefix \/33 is out of range/],
    ['198.18.0.10/0', undefined, /prefix \/0 is out of range/],
    ['198.18.0.10/7', undefined, /out of range/],
    ['198.18.0.10/31', undefined, /out of range/],
    ['198.18.0.10/32', undefined, /out of range/],
    ['198.18.0.10/015', undefined, /out of range/],
    ['198.18.0.0/15', undefined, /network address of 198\.18\.0\.0\/15/],
    ['198.18.200.0/24', undefined, /network address of 198\.18\.200\.0\/24/],
    ['198.19.255.255/15', undefined, /broadcast address of 198\.18\.0\.0\/15/],
    ['198.18.200.255/24', undefined, /broadcast address/],
    ['198.18.0.1/15', undefined, /equals the gateway 198\.18\.0\.1/],
    ['198.18.200.9/24', '198.18.200.9', /equals the gateway/],
    ['198.18.200.10/24', '198.18.201.1', /gateway 198\.18\.201\.1 is outside 198\.18\.200\.0\/24/],
    ['198.18.200.10/24', '198.18.200.0', /gateway .* network address/],
    ['198.18.200.10/24', '198.18.200.255', /gateway .* broadcast address/],
    ['198.18.200.10/24', '198.18.200', /gateway "198\.18\.200" is not a valid IPv4/],
  ];
  for (const [cidr, gateway, message] of rejects) {
    it(`rejects ${JSON.stringify(cidr)}${gateway ? ` with gateway ${gateway}` : ''}`, () => {
      assert.throws(() => parseContainerAddress(cidr, gateway), (err: unknown) => {
        assert.ok(err instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${String(err)}`);
        assert.match(err.message, message);
        assert.ok(!err.message.includes('\n'), 'message is one line');
        return true;
      });
    });
  }
});

describe('hostVethName', () => {
  it('is "tsvz" + 8 hex chars, at most 15 chars (IFNAMSIZ)', () => {
    for (const key of ['', 'a', '/var/lib/tsvz/containers' + 'x'.repeat(200), '/var/lib/tsvz/web-1']) {
      const name = hostVethName(key);
      assert.match(name, /^tsvz[0-9a-f]{8}$/);
      assert.ok(name.length <= 15);
    }
  });

  it('is stable and differs between keys', () => {
    assert.equal(hostVethName('/var/lib/tsvz/web-1'), hostVethName('/var/lib/tsvz/web-1'));
    // Pinned: a changed derivation would orphan the host veths of running containers.
    assert.equal(hostVethName('/var/lib/tsvz/web-1'), 'tsvz55c7009b');
    assert.notEqual(hostVethName('/var/lib/tsvz/web-1'), hostVethName('/var/lib/tsvz/web-2'));
    assert.notEqual(hostVethName('/a/web'), hostVethName('/b/web'));
  });
});

it('containerMac is stable, unicast and locally administered', async () => {
  const { containerMac } = await import('../../runtime/network');
  const mac = containerMac('p1');
  assert.equal(mac, containerMac('p1'));
  assert.notEqual(mac, containerMac('p2'));
  assert.match(mac, /^02(:[0-9a-f]{2}){5}$/);
});
