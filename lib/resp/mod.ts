/**
 * The Redis-protocol (RESP2) front end of a node.
 *
 * @module
 */

export { respCommandTable, type RespServer, startRespServer } from "./listener.ts";
export { RespParser, RespProtocolError } from "./parser.ts";
export { ReplyWriter } from "./reply_writer.ts";
