# rackcast appliance image: `rackcast serve` (DHCP, TFTP, HTTP) with the boot environment built in.
#
#   docker build -t rackcast .
#   docker run -d --name rackcast --network host -v rackcast-data:/var/lib/rackcast \
#     rackcast serve --interface eth1 --dhcp proxy
#   docker run --rm -v rackcast-data:/var/lib/rackcast rackcast image list
#
# Host networking is required: DHCP hears the broadcasts of machines that have no address yet, and
# TFTP/multicast talk to them directly. The process runs as the unprivileged user `node`; binding
# DHCP (udp/67) and TFTP (udp/69) needs CAP_NET_BIND_SERVICE only, which the node binary carries as
# a file capability (docs/operations.md, "Running in a container", says why and what else works).
# The image holds no state: everything lives in the /var/lib/rackcast volume.
#
# BASE is overridable so the image builds without Docker Hub (scripts/container-smoke.ts builds it
# on a local stand-in for node:24-bookworm-slim).
ARG BASE=docker.io/library/node:24-bookworm-slim

# ---- build: npm ci (with dev dependencies: esbuild bundles the client), the boot environment ----
FROM ${BASE} AS build
ENV DEBIAN_FRONTEND=noninteractive
# python3 make g++: zstd-napi and rcudp compile with node-gyp. binutils (strip), zstd: the boot environment
# build; it fetches the kernel and busybox-static itself with apt-get download (never installed),
# so the package lists stay. ipxe: undionly.kpxe, ipxe.efi and snponly.efi for the runtime stage.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ binutils zstd ipxe \
 && rm -rf /var/cache/apt/archives/*.deb
WORKDIR /src
# node-gyp takes the Node headers of the base image (/usr/local/include/node) instead of
# downloading them.
ENV npm_config_nodedir=/usr/local
COPY package.json package-lock.json ./
# npm ci runs the root install script, which builds the rcudp addon (multicast datagram I/O) from
# these sources into services/multicast/native/build/Release/rcudp.node: the runtime stage gets it
# with services/, the boot environment's client with its bundle. .dockerignore keeps a host-built
# build/ out of the context, so COPY . . below cannot replace it with one made for another Node.
COPY services/multicast/native/binding.gyp services/multicast/native/rcudp.c ./services/multicast/native/
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build:boot-env -- --data-dir /build/data --cache-dir /build/cache
# Production dependencies only. The npm package "node" (the project's pinned Node binary, 127 MB)
# goes too: in the image the base's Node 24 runs rackcast.
RUN npm prune --omit=dev --no-audit --no-fund \
 && rm -rf node_modules/node node_modules/.bin/node

# ---- runtime: what `rackcast serve` and the other subcommands need, nothing else ----
FROM ${BASE}
ENV NODE_ENV=production \
    RACKCAST_DATA_DIR=/var/lib/rackcast
# The one privilege the services need: binding ports below 1024 (DHCP 67, TFTP 69) as the user
# `node`. A file capability works under Docker and Podman alike (Docker does not hand --cap-add
# to a non-root user); setcap is installed for this step only.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcap2-bin \
 && setcap cap_net_bind_service=+ep "$(readlink -f "$(command -v node)")" \
 && apt-get purge -y --auto-remove libcap2-bin \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && mkdir -p /var/lib/rackcast \
 && chown node:node /var/lib/rackcast
WORKDIR /opt/rackcast
COPY --from=build /usr/lib/ipxe/undionly.kpxe /usr/lib/ipxe/ipxe.efi /usr/lib/ipxe/snponly.efi /usr/lib/ipxe/
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/bin ./bin
COPY --from=build /src/services ./services
COPY --from=build /src/appliance ./appliance
COPY --from=build /src/packaging/container ./packaging/container
# vmlinuz, initrd.zst, client.cpio.zst, boot-env.json: installed into <data>/boot at `serve` start
COPY --from=build /build/data/boot ./boot-env-dist
USER node
VOLUME ["/var/lib/rackcast"]
# Documentation only (host networking): DHCP, TFTP, ProxyDHCP boot server, HTTP, multicast data.
EXPOSE 67/udp 69/udp 4011/udp 8080/tcp 9700/udp
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD ["node", "/opt/rackcast/packaging/container/healthcheck.mjs"]
ENTRYPOINT ["node", "/opt/rackcast/packaging/container/entrypoint.mjs"]
CMD ["serve"]
