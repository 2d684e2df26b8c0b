// What the server answers, as a pure function of the config, the lease store and one request.
// No sockets here: server.ts decodes, calls respond(), and sends what comes back.
//
// Full mode (RFC 2131 §4.3): DISCOVER → OFFER; REQUEST → ACK/NAK by client state (§4.3.2):
//   SELECTING    option 54 present: ours → bind, else the client chose another server: drop our
//                offer and stay silent
//   INIT-REBOOT  no 54, option 50, ciaddr 0: confirm the address (NAK if not on our network/held)
//   RENEWING / REBINDING  ciaddr set: extend; answer unicast to ciaddr
// DECLINE marks the address bad, RELEASE frees it, INFORM gets options only (§4.3.5).
// Proxy mode (PXE spec §2.2.3 "ProxyDHCP"): only PXE/HTTP-boot clients, an OFFER without an
// address (yiaddr 0) that carries the boot file; on port 4011 the boot-server REQUEST is ACKed
// unicast to wherever it came from (PXE spec §2.2.5; EDK2 sends it for a "BINL" proxy offer).
//
// Destinations (RFC 2131 §4.1): giaddr set → the relay, port 67; NAK → broadcast; ciaddr set →
// unicast to it; else broadcast. The RFC prefers unicast to chaddr/yiaddr when the client's
// BROADCAST flag is clear, but that needs an ARP entry for an address the client has not
// configured, which node:dgram cannot write; RFC 1542 §5.4 lets the server broadcast instead.
import { chooseBootFile, type BootChoice } from './arch.ts';
import { inNetwork, type DhcpConfig, type Remote } from './config.ts';
import { clientKey, type LeaseStore } from './leases.ts';
import {
  DHCPACK, DHCPDECLINE, DHCPDISCOVER, DHCPINFORM, DHCPNAK, DHCPOFFER, DHCPRELEASE, DHCPREQUEST, IPXE_NO_PXEDHCP, OPT,
  encodeU8, encodeSubOptions, getOption, macString, pxeVendorOptions, setOption, tryOption,
} from './options.ts';
import { BOOTREPLY, BOOTREQUEST, FLAG_BROADCAST, HTYPE_ETHERNET, encodingLength, type DhcpMessage } from './packet.ts';

const ZERO = '0.0.0.0';
const BROADCAST = '255.255.255.255';

export interface Reply { msg: DhcpMessage; to: Remote; via: 'dhcp' | 'pxe' }
export type Outcome = { replies: Reply[]; event: string } | { drop: string };
export interface Context { cfg: DhcpConfig; leases: LeaseStore | null }

interface Client {
  mac: string; key: string; vendorClass: string; isPxe: boolean; isHttp: boolean; isIpxe: boolean;
  arches: number[]; boot: BootChoice;
}

function describe(cfg: DhcpConfig, req: DhcpMessage): Client {
  const mac = macString(req.chaddr);
  const vendorClass = tryOption(req.options, OPT.vendorClass) ?? '';
  const userClass = tryOption(req.options, OPT.userClass);
  const isIpxe = req.options.has(OPT.ipxeEncap) || (userClass?.classes.includes('iPXE') ?? false);
  const arches = tryOption(req.options, OPT.clientArch) ?? [];
  const isHttp = vendorClass.startsWith('HTTPClient');
  return {
    mac, key: clientKey(tryOption(req.options, OPT.clientId), mac), vendorClass, isIpxe, arches,
    isPxe: vendorClass.startsWith('PXEClient'), isHttp,
    boot: chooseBootFile({ arches, vendorClass, chaddr: req.chaddr, isIpxe }, cfg.boot),
  };
}

function reply(cfg: DhcpConfig, req: DhcpMessage, type: number): DhcpMessage {
  const options = new Map<number, Buffer>();
  setOption(options, OPT.messageType, type);
  setOption(options, OPT.serverId, cfg.interfaceAddress);
  return {
    op: BOOTREPLY, htype: req.htype, hlen: req.hlen, hops: 0, xid: req.xid, secs: 0, flags: req.flags,
    ciaddr: type === DHCPACK || type === DHCPNAK ? req.ciaddr : ZERO, yiaddr: ZERO, siaddr: ZERO,
    giaddr: req.giaddr, chaddr: req.chaddr, sname: '', file: '', options,
  };
}

/** Lease parameters (RFC 2132 §3, §9.2, §9.11; T1 = ½, T2 = ⅞ of the lease per RFC 2131 §4.4.5). */
function addLeaseOptions(cfg: DhcpConfig, m: DhcpMessage, withTimes: boolean): void {
  if (withTimes) {
    setOption(m.options, OPT.leaseTime, cfg.leaseTime);
    setOption(m.options, OPT.renewalT1, Math.floor(cfg.leaseTime / 2));
    setOption(m.options, OPT.rebindingT2, Math.floor(cfg.leaseTime * 7 / 8));
  }
  if (cfg.network) {
    setOption(m.options, OPT.subnetMask, cfg.network.netmask);
    setOption(m.options, OPT.broadcast, cfg.network.broadcast);
  }
  if (cfg.router) setOption(m.options, OPT.router, [cfg.router]);
  if (cfg.dns.length) setOption(m.options, OPT.dns, [...cfg.dns]);
  if (cfg.domainName) setOption(m.options, OPT.domainName, cfg.domainName);
}

/** Boot fields for PXE / HTTP-boot / iPXE clients. Returns false when there is nothing to boot. */
function addBoot(cfg: DhcpConfig, req: DhcpMessage, c: Client, m: DhcpMessage): boolean {
  if (!c.isPxe && !c.isHttp && !c.isIpxe) return false;
  if (c.boot.kind === 'none') return false;
  const file = c.boot.kind === 'tftp' ? c.boot.file : c.boot.url;
  m.siaddr = c.boot.kind === 'tftp' ? cfg.tftpServer : cfg.interfaceAddress;
  if (file.length < 128) m.file = file; // longer URLs travel in option 67 only
  if (c.boot.kind === 'tftp') { // next server three ways: siaddr, sname (PXE spec §2.2.3), option 66
    m.sname = cfg.tftpServer;
    setOption(m.options, OPT.tftpServer, cfg.tftpServer);
  }
  setOption(m.options, OPT.bootFile, file);
  // Echo the class: PXE ROMs ignore offers without "PXEClient" (PXE spec §2.2.1), UEFI HTTP Boot
  // ignores offers without "HTTPClient" (UEFI 2.x §24.7.2).
  if (c.isHttp) setOption(m.options, OPT.vendorClass, 'HTTPClient');
  else if (c.isPxe) setOption(m.options, OPT.vendorClass, 'PXEClient');
  // Option 43 sub-option 6 = 8 ("boot file is in this offer, no boot-server discovery") for every
  // firmware PXE client that boots over TFTP: without it EDK2 (OVMF, most UEFI servers) treats
  // the offer as a BINL offer, ignores our boot file and asks port 4011 instead (PXE-E16; seen in
  // the QEMU lab, EDK2 PxeBcDhcp4.c).
  if (c.isPxe && !c.isIpxe && c.boot.kind === 'tftp') m.options.set(OPT.vendorSpecific, pxeVendorOptions());
  const uuid = req.options.get(OPT.clientUuid);
  if (uuid !== undefined) m.options.set(OPT.clientUuid, Buffer.from(uuid)); // RFC 4578 §2.3: echo as sent
  // iPXE "no-pxedhcp" (LAB-NOTES: saves the 2–3 s it waits for ProxyDHCP). Never in proxy mode,
  // where the ProxyDHCP offer is how iPXE learns its script.
  if (c.isIpxe && cfg.mode === 'full') m.options.set(OPT.ipxeEncap, encodeSubOptions(new Map([[IPXE_NO_PXEDHCP, encodeU8(1)]])));
  return true;
}

function destination(cfg: DhcpConfig, req: DhcpMessage, m: DhcpMessage, type: number): Remote {
  if (req.giaddr !== ZERO) {
    if (type === DHCPNAK) m.flags |= FLAG_BROADCAST; // RFC 2131 §4.1: the relay broadcasts the NAK
    return { address: req.giaddr, port: cfg.port };
  }
  if (type === DHCPNAK) return { address: BROADCAST, port: cfg.clientPort };
  if (req.ciaddr !== ZERO) return { address: req.ciaddr, port: cfg.clientPort };
  return { address: BROADCAST, port: cfg.clientPort };
}

function finish(cfg: DhcpConfig, req: DhcpMessage, m: DhcpMessage, type: number, event: string): Outcome {
  const relay = req.options.get(OPT.relayAgent);
  if (relay !== undefined && req.giaddr !== ZERO) m.options.set(OPT.relayAgent, relay); // RFC 3046 §2.2: last
  const max = Math.max(576, tryOption(req.options, OPT.maxMessageSize) ?? 576) - 28; // minus IP + UDP headers
  if (encodingLength(m) > max) return { drop: 'reply-too-large' };
  return { replies: [{ msg: m, to: destination(cfg, req, m, type), via: 'dhcp' }], event };
}

function nak(cfg: DhcpConfig, req: DhcpMessage, why: string): Outcome {
  const m = reply(cfg, req, DHCPNAK);
  m.ciaddr = ZERO;
  m.options.set(56, Buffer.from(why, 'latin1')); // RFC 2132 §9.9 message
  return finish(cfg, req, m, DHCPNAK, 'nak');
}

function full(ctx: Context, req: DhcpMessage, c: Client, type: number): Outcome {
  const { cfg } = ctx;
  const leases = ctx.leases!;
  const net = cfg.network!;
  if (req.giaddr !== ZERO && !inNetwork(net, req.giaddr)) return { drop: 'relay-foreign-subnet' };
  const sid = tryOption(req.options, OPT.serverId);
  const requested = tryOption(req.options, OPT.requestedIp);
  const ack = (ip: string | null, event: string): Outcome => {
    const m = reply(cfg, req, DHCPACK);
    if (ip) m.yiaddr = ip;
    addLeaseOptions(cfg, m, ip !== null);
    addBoot(cfg, req, c, m);
    return finish(cfg, req, m, DHCPACK, event);
  };
  switch (type) {
    case DHCPDISCOVER: {
      const lease = leases.offer(c.key, c.mac, requested);
      if (!lease) return { drop: 'pool-exhausted' };
      const m = reply(cfg, req, DHCPOFFER);
      m.yiaddr = lease.ip;
      addLeaseOptions(cfg, m, true);
      addBoot(cfg, req, c, m);
      return finish(cfg, req, m, DHCPOFFER, 'offer');
    }
    case DHCPREQUEST: {
      if (sid !== undefined) { // SELECTING
        if (sid !== cfg.interfaceAddress) { leases.cancelOffer(c.key); return { drop: 'other-server' }; }
        const ip = requested ?? (req.ciaddr !== ZERO ? req.ciaddr : undefined);
        if (!ip) return nak(cfg, req, 'no requested address');
        return leases.bind(c.key, c.mac, ip, cfg.leaseTime) ? ack(ip, 'ack') : nak(cfg, req, 'address not available');
      }
      const ip = req.ciaddr !== ZERO ? req.ciaddr : requested; // RENEWING/REBINDING, else INIT-REBOOT
      if (!ip) return { drop: 'request-without-address' };
      if (!inNetwork(net, ip)) return req.ciaddr !== ZERO ? { drop: 'not-our-network' } : nak(cfg, req, 'wrong network');
      return leases.bind(c.key, c.mac, ip, cfg.leaseTime) ? ack(ip, req.ciaddr !== ZERO ? 'renew' : 'ack') : nak(cfg, req, 'address not available');
    }
    case DHCPDECLINE:
      if (sid !== cfg.interfaceAddress) return { drop: 'other-server' };
      if (!requested || !leases.decline(c.key, requested)) return { drop: 'decline-unknown-address' };
      return { replies: [], event: 'decline' };
    case DHCPRELEASE:
      if (sid !== undefined && sid !== cfg.interfaceAddress) return { drop: 'other-server' };
      return leases.release(c.key, req.ciaddr) ? { replies: [], event: 'release' } : { drop: 'release-unknown-lease' };
    case DHCPINFORM:
      if (req.ciaddr === ZERO) return { drop: 'inform-without-ciaddr' };
      if (!inNetwork(net, req.ciaddr)) return { drop: 'not-our-network' }; // never unicast off the boot network
      return ack(null, 'inform');
    default:
      return { drop: 'not-a-client-message' };
  }
}

function proxy(ctx: Context, req: DhcpMessage, c: Client, type: number, via: 'dhcp' | 'pxe', from: Remote): Outcome {
  const { cfg } = ctx;
  if (!c.isPxe && !c.isHttp) return { drop: 'not-pxe' };
  if (via === 'dhcp') {
    if (type === DHCPREQUEST) {
      const sid = tryOption(req.options, OPT.serverId);
      if (sid !== cfg.interfaceAddress) return { drop: 'other-server' }; // the REQUEST for the site's server
    } else if (type !== DHCPDISCOVER) return { drop: 'proxy-ignores-type' };
  } else if (type !== DHCPREQUEST && type !== DHCPINFORM) return { drop: 'proxy-ignores-type' };
  const answer = via === 'dhcp' && type === DHCPDISCOVER ? DHCPOFFER : DHCPACK;
  const m = reply(cfg, req, answer);
  if (!addBoot(cfg, req, c, m)) return { drop: 'no-boot-file' };
  if (via === 'pxe') { // boot server reply goes straight back (PXE spec §2.2.5)
    const out = finish(cfg, req, m, answer, 'pxe-ack');
    if ('drop' in out) return out;
    return { replies: [{ msg: m, to: from, via: 'pxe' }], event: 'pxe-ack' };
  }
  return finish(cfg, req, m, answer, answer === DHCPOFFER ? 'proxy-offer' : 'proxy-ack');
}

/** The server's answer to one decoded request: replies to send, or the reason it is dropped. */
export function respond(ctx: Context, req: DhcpMessage, via: 'dhcp' | 'pxe', from: Remote): Outcome {
  if (req.op !== BOOTREQUEST) return { drop: 'not-bootrequest' };
  if (req.htype !== HTYPE_ETHERNET || req.hlen !== 6) return { drop: 'not-ethernet' };
  if (!req.options.has(OPT.messageType)) return { drop: 'bootp' };
  const type = getOption(req.options, OPT.messageType)!; // malformed 53 throws: counted as malformed
  const c = describe(ctx.cfg, req);
  return ctx.cfg.mode === 'full' && via === 'dhcp' ? full(ctx, req, c, type) : proxy(ctx, req, c, type, via, from);
}
