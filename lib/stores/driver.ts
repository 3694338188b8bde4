/**
 * Loads a store's database driver, an optional peer dependency, only when the store is built, so
 * `import "express-actors"` never needs it; a missing driver says which package to install.
 */
export function loadDriver<T>(pkg: string, store: string): T {
  try {
    return require(pkg) as T;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === "MODULE_NOT_FOUND" && e.message.includes(`'${pkg}'`)) {
      throw new Error(`${store} needs the "${pkg}" package, which is not installed: npm install ${pkg}`, { cause: err });
    }
    throw err;
  }
}
