export { createClient, type ClientOptions } from "./http";
export type { ActorAccessor, ActorHandle, ActorKey, Client, CreateOptions, HandleOptions } from "./core";
export type { ActorQuery } from "../registry/query";
