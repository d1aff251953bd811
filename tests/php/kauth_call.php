<?php
// Calls one KauthClient method on a connection of its own, as one PHP
// request of a panel would, and prints the outcome as one JSON line:
// {"ok":true,"result":…} or {"ok":false,"error":"Kauth\\NotFoundError","code":"not_found","message":"…"}.
//
//   php kauth_call.php CLIENT_PHP SOCKET METHOD ARGS_JSON_ARRAY [TRUSTED_UIDS_JSON]

declare(strict_types=1);

[$_, $library, $socket, $method, $args] = $argv;
$trusted = json_decode($argv[5] ?? '[0]', true, 4, JSON_THROW_ON_ERROR);
require $library;

try {
    $client = new Kauth\KauthClient($socket, 20.0, $trusted);
    $result = $client->{$method}(...json_decode($args, true, 16, JSON_THROW_ON_ERROR));
    echo json_encode(['ok' => true, 'result' => $result], JSON_UNESCAPED_SLASHES), "\n";
} catch (Kauth\KauthError $e) {
    echo json_encode([
        'ok' => false,
        'error' => get_class($e),
        'code' => $e->errorCode,
        'message' => $e->getMessage(),
    ], JSON_UNESCAPED_SLASHES), "\n";
} catch (Kauth\KauthException $e) {
    echo json_encode(['ok' => false, 'error' => get_class($e), 'message' => $e->getMessage()], JSON_UNESCAPED_SLASHES), "\n";
}
