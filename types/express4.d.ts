// The `express4` alias (npm:express@4) is typed with Express 5's types; the tests use the common surface.
declare module "express4" {
  import express = require("express");
  export = express;
}
