# ojs-ml serve in a container: `docker compose up` (see docs/deploy.md).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
COPY cli ./cli
COPY bench ./bench
# npm ci runs `prepare` (tsc); then only the runtime dependencies are kept.
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
USER node
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["node", "-e", "fetch('http://127.0.0.1:8080/ok').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# The same node flags as the ojs-ml command's shebang (cli/main.ts says why).
ENTRYPOINT ["node", "--max-semi-space-size=2", "dist/cli/main.js"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--root", "data=/data"]
