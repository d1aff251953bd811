<?php
/**
 * A client of kauthd's wire protocol (PROTOCOL.md) for web panels in PHP
 * 8.2, with ext-sockets (Debian's php-cli has it) and nothing else.
 *
 * One connection per object; a PHP request makes its own. The login of a
 * two-page sign-in goes over two requests: beginLogin() on the password
 * page returns a continuation token, continueLogin() on the code page
 * finishes it (see README.md next to this file).
 *
 * Peer check: before anything is sent past the hello, the client checks
 * that the process answering on the socket runs as a trusted uid (root by
 * default). PHP has no SO_PEERCRED, so it asks the kernel for the sender's
 * credentials on every chunk it reads (SO_PASSCRED / SCM_CREDENTIALS): the
 * kernel stamps them, and a process can claim no uid but its own (real,
 * effective or saved) without CAP_SETUID.
 */

declare(strict_types=1);

namespace Kauth;

/** Anything that went wrong talking to kauthd. */
class KauthException extends \RuntimeException
{
}

/** The socket could not be used, or the listener is not kauthd. */
class ConnectionError extends KauthException
{
}

/**
 * kauthd answered with an error frame. `$errorCode` is the protocol's code
 * (`not_found`, `refused`, …); the message is written for people and
 * never contains a secret.
 */
class KauthError extends KauthException
{
    public function __construct(public readonly string $errorCode, string $message)
    {
        parent::__construct($message);
    }
}

class UnsupportedVersionError extends KauthError
{
}
class BadRequestError extends KauthError
{
}
class TooLargeError extends KauthError
{
}
class ForbiddenError extends KauthError
{
}
/** No such account or session; or a continuation token that is used, expired or another uid's. */
class NotFoundError extends KauthError
{
}
class AlreadyExistsError extends KauthError
{
}
class InvalidError extends KauthError
{
}
/** A password, code or token was wrong, or a lock holds. */
class RefusedError extends KauthError
{
}
class BusyError extends KauthError
{
}
class InternalError extends KauthError
{
}
/** Send the request again with force to go ahead; the message says what follows. */
class ConfirmationNeededError extends KauthError
{
}

final class KauthClient
{
    public const DEFAULT_SOCKET = '/run/kauthd/kauthd.sock';
    public const VERSION = 1;
    /** The largest frame either side sends (PROTOCOL.md). */
    public const MAX_FRAME = 65536;

    private const ERRORS = [
        'unsupported_version' => UnsupportedVersionError::class,
        'bad_request' => BadRequestError::class,
        'too_large' => TooLargeError::class,
        'forbidden' => ForbiddenError::class,
        'not_found' => NotFoundError::class,
        'already_exists' => AlreadyExistsError::class,
        'invalid' => InvalidError::class,
        'refused' => RefusedError::class,
        'busy' => BusyError::class,
        'internal' => InternalError::class,
        'confirmation_needed' => ConfirmationNeededError::class,
    ];

    /** @var \Socket */
    private $socket;
    private string $buffer = '';
    /** @var array<string, mixed> */
    private array $welcome;

    /**
     * Connects, checks the listener's uid and says hello.
     *
     * @param list<int> $trustedUids uids kauthd may run as (root; add the
     *                               kauthd user if it runs as one)
     */
    public function __construct(
        string $socketPath = self::DEFAULT_SOCKET,
        private float $timeout = 10.0,
        private array $trustedUids = [0],
        string $clientName = 'kauth-php',
    ) {
        if (!extension_loaded('sockets')) {
            throw new ConnectionError('the PHP sockets extension is missing; install php-cli (Debian ships it) or enable ext-sockets');
        }
        $socket = @socket_create(AF_UNIX, SOCK_STREAM, 0);
        if ($socket === false) {
            throw new ConnectionError('cannot create a socket: ' . socket_strerror(socket_last_error()));
        }
        $this->socket = $socket;
        $seconds = (int) $timeout;
        $tv = ['sec' => $seconds, 'usec' => (int) (($timeout - $seconds) * 1e6)];
        socket_set_option($socket, SOL_SOCKET, SO_RCVTIMEO, $tv);
        socket_set_option($socket, SOL_SOCKET, SO_SNDTIMEO, $tv);
        // Ask the kernel to stamp what we read with the sender's credentials.
        if (!socket_set_option($socket, SOL_SOCKET, SO_PASSCRED, 1)) {
            throw new ConnectionError('cannot ask for the peer credentials (SO_PASSCRED); refusing to talk to an unchecked listener');
        }
        if (!@socket_connect($socket, $socketPath)) {
            $why = socket_strerror(socket_last_error($socket));
            throw new ConnectionError("cannot connect to kauthd at {$socketPath}: {$why}; is kauthd running, and may this uid reach its socket?");
        }
        // The hello carries no secret; its answer is checked before any
        // other frame is sent.
        $this->welcome = $this->call(['type' => 'hello', 'version' => self::VERSION, 'client' => $clientName]);
    }

    public function __destruct()
    {
        $this->close();
    }

    public function close(): void
    {
        if (isset($this->socket)) {
            socket_close($this->socket);
            unset($this->socket);
        }
    }

    /**
     * The `welcome` kauthd answered the hello with (`version`, `server`).
     *
     * @return array<string, mixed>
     */
    public function hello(): array
    {
        return $this->welcome;
    }

    /**
     * Sends one request and returns its answer; an error frame is thrown
     * as the KauthError subclass of its code.
     *
     * @param array<string, mixed> $request
     * @return array<string, mixed>
     */
    public function call(array $request): array
    {
        $this->send($request);
        $response = $this->receive();
        if (($response['type'] ?? null) === 'error') {
            $code = (string) ($response['code'] ?? 'internal');
            $class = self::ERRORS[$code] ?? KauthError::class;
            throw new $class($code, (string) ($response['message'] ?? 'kauthd refused the request'));
        }
        return $response;
    }

    // ----- Login over two requests -----------------------------------

    /**
     * The password page: starts a resumable login. The answer is either
     * finished (`outcome` success, denied or locked) or waits for the code:
     * `outcome` null, `continuation` the token to keep (in the server-side
     * session, never in the page), `prompt` the text to show.
     * `messages` lists what kauthd said on the way ([style, text] pairs).
     *
     * @return array{outcome: ?string, continuation: ?string, prompt: ?string, echo: bool, messages: list<array{style: string, text: string}>}
     */
    public function beginLogin(string $user, string $password, string $service = 'kpanel', ?string $rhost = null): array
    {
        $request = [
            'type' => 'begin',
            'user' => $user,
            'service' => $service,
            'mode' => 'password',
            'authtok' => $password,
            'resumable' => true,
        ];
        if ($rhost !== null && $rhost !== '') {
            $request['rhost'] = $rhost;
        }
        return $this->relay($this->call($request));
    }

    /**
     * The code page: the code (or a recovery code) for the login that
     * `$token` parked, on this new connection. Answers like beginLogin();
     * a second prompt carries a new token. A used, expired or foreign
     * token throws NotFoundError: send the person back to the password page.
     *
     * @return array{outcome: ?string, continuation: ?string, prompt: ?string, echo: bool, messages: list<array{style: string, text: string}>}
     */
    public function continueLogin(string $token, string $code): array
    {
        return $this->relay($this->call(['type' => 'resume', 'continuation' => $token, 'text' => $code]));
    }

    /**
     * Answers a prompt that came without a token (echo on: "Press Enter
     * once you have saved them"), on this same connection.
     *
     * @return array{outcome: ?string, continuation: ?string, prompt: ?string, echo: bool, messages: list<array{style: string, text: string}>}
     */
    public function answerPrompt(string $text): array
    {
        return $this->relay($this->call(['type' => 'answer', 'text' => $text]));
    }

    /**
     * Follows `message` frames (acknowledging each) to the next prompt or
     * the end.
     *
     * @param array<string, mixed> $response
     */
    private function relay(array $response): array
    {
        $messages = [];
        for ($i = 0; $i < 64; $i++) {
            switch ($response['type'] ?? '') {
                case 'message':
                    $messages[] = ['style' => (string) $response['style'], 'text' => (string) $response['text']];
                    $response = $this->call(['type' => 'continue']);
                    break;
                case 'prompt':
                    return [
                        'outcome' => null,
                        'continuation' => $response['continuation'] ?? null,
                        'prompt' => (string) $response['message'],
                        'echo' => (bool) $response['echo'],
                        'messages' => $messages,
                    ];
                case 'finished':
                    return [
                        'outcome' => (string) $response['outcome'],
                        'continuation' => null,
                        'prompt' => null,
                        'echo' => false,
                        'messages' => $messages,
                    ];
                default:
                    throw new ConnectionError('unexpected answer in a login conversation: ' . (string) ($response['type'] ?? '?'));
            }
        }
        throw new ConnectionError('the login conversation did not end');
    }

    // ----- Two-factor authentication ---------------------------------

    /** @return array<string, mixed> */
    public function twoFactorStatus(?string $user = null): array
    {
        return $this->call(self::withUser(['type' => 'two_factor_status'], $user));
    }

    /**
     * Starts (or resumes) an enrollment: `secret`, `setup_key`, `uri` for
     * the QR code, `expires`. `$proof` is ['password' => …, 'code' => …].
     *
     * @param array<string, string> $proof
     * @return array<string, mixed>
     */
    public function enrollBegin(?string $user = null, array $proof = []): array
    {
        return $this->call(self::withUser(['type' => 'enroll_begin', 'proof' => (object) $proof], $user));
    }

    /**
     * Confirms the pending enrollment with a code from the new secret;
     * returns the recovery codes, to show once.
     *
     * @return list<string>
     */
    public function enrollConfirm(?string $user, string $code): array
    {
        $answer = $this->call(self::withUser(['type' => 'enroll_confirm', 'code' => $code], $user));
        return $answer['codes'];
    }

    public function recoveryCodesLeft(?string $user = null): int
    {
        return (int) $this->call(self::withUser(['type' => 'recovery_codes'], $user))['left'];
    }

    /**
     * @param array<string, string> $proof
     * @return list<string>
     */
    public function regenerateRecoveryCodes(?string $user = null, array $proof = []): array
    {
        $request = self::withUser(['type' => 'recovery_codes', 'regenerate' => true, 'proof' => (object) $proof], $user);
        return $this->call($request)['codes'];
    }

    /** @param array<string, string> $proof */
    public function disableTwoFactor(?string $user, array $proof, bool $force = false): void
    {
        $users = $user === null ? [] : [$user];
        $this->call(['type' => 'two_factor_disable', 'users' => $users, 'proof' => (object) $proof, 'force' => $force]);
    }

    // ----- Sessions and activity -------------------------------------

    /**
     * Records the panel session of a login that finished with success;
     * `$client` is shown in the sessions list (a browser's user agent).
     */
    public function sessionOpen(string $user, string $service = 'kpanel', ?string $rhost = null, ?string $client = null): string
    {
        $request = ['type' => 'session_open', 'user' => $user, 'service' => $service];
        if ($rhost !== null && $rhost !== '') {
            $request['rhost'] = $rhost;
        }
        if ($client !== null && $client !== '') {
            $request['client'] = $client;
        }
        return (string) $this->call($request)['id'];
    }

    /**
     * Whether the session is still valid; ask at every page, so that a
     * sign-out elsewhere logs the browser out.
     */
    public function sessionCheck(string $id): bool
    {
        return (bool) $this->call(['type' => 'session_check', 'id' => $id])['valid'];
    }

    /**
     * Open sessions, oldest first, every page.
     *
     * @return list<array<string, mixed>>
     */
    public function sessions(?string $user = null): array
    {
        return $this->allPages(self::withUser(['type' => 'sessions'], $user), 'sessions');
    }

    /** @return list<string> the ids signed out */
    public function signOut(string $id): array
    {
        return $this->call(['type' => 'sign_out', 'id' => $id])['ids'];
    }

    /**
     * "Sign out everywhere": every session of the user (an SSH login of a
     * service in `[sessions] kill_services` ends).
     *
     * @return list<string> the ids signed out
     */
    public function signOutAll(?string $user = null): array
    {
        return $this->call(self::withUser(['type' => 'sign_out', 'all' => true], $user))['ids'];
    }

    /**
     * Recent events, newest first (at most `$limit`).
     *
     * @return list<array<string, mixed>>
     */
    public function activity(?string $user = null, ?int $since = null, int $limit = 200): array
    {
        $request = self::withUser(['type' => 'activity', 'limit' => $limit], $user);
        if ($since !== null) {
            $request['since'] = $since;
        }
        return $this->call($request)['events'];
    }

    // ----- Framing ---------------------------------------------------

    /** @param array<string, mixed> $request */
    private static function withUser(array $request, ?string $user): array
    {
        if ($user !== null) {
            $request['user'] = $user;
        }
        return $request;
    }

    /**
     * @param array<string, mixed> $request
     * @return list<array<string, mixed>>
     */
    private function allPages(array $request, string $rows): array
    {
        $all = [];
        for ($page = 0; $page < 10000; $page++) {
            $answer = $this->call($request);
            array_push($all, ...$answer[$rows]);
            if (!isset($answer['next'])) {
                return $all;
            }
            $request['after'] = $answer['next'];
        }
        throw new ConnectionError('too many pages');
    }

    /** @param array<string, mixed> $request */
    private function send(array $request): void
    {
        if (!isset($this->socket)) {
            throw new ConnectionError('the connection is closed');
        }
        $body = json_encode($request, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR);
        if (strlen($body) > self::MAX_FRAME) {
            throw new TooLargeError('too_large', 'the request is over the 64 KiB frame limit');
        }
        $frame = pack('N', strlen($body)) . $body;
        $sent = 0;
        while ($sent < strlen($frame)) {
            $n = @socket_write($this->socket, substr($frame, $sent));
            if ($n === false || $n === 0) {
                throw new ConnectionError('kauthd closed the connection: ' . socket_strerror(socket_last_error($this->socket)));
            }
            $sent += $n;
        }
    }

    /** @return array<string, mixed> */
    private function receive(): array
    {
        $length = unpack('N', $this->read(4))[1];
        if ($length > self::MAX_FRAME) {
            throw new ConnectionError("kauthd sent a frame of {$length} bytes, over the limit");
        }
        $body = $this->read($length);
        try {
            $response = json_decode($body, true, 64, JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new ConnectionError('kauthd sent a frame that is not JSON');
        }
        if (!is_array($response)) {
            throw new ConnectionError('kauthd sent a frame that is not an object');
        }
        return $response;
    }

    /** Reads exactly `$n` bytes, each chunk from a trusted sender. */
    private function read(int $n): string
    {
        while (strlen($this->buffer) < $n) {
            $this->buffer .= $this->readChunk();
        }
        $out = substr($this->buffer, 0, $n);
        $this->buffer = (string) substr($this->buffer, $n);
        return $out;
    }

    private function readChunk(): string
    {
        $message = [
            'name' => [],
            'buffer_size' => 8192,
            'controllen' => socket_cmsg_space(SOL_SOCKET, SCM_CREDENTIALS),
        ];
        $n = @socket_recvmsg($this->socket, $message, 0);
        if ($n === false) {
            $why = socket_strerror(socket_last_error($this->socket));
            throw new ConnectionError("no answer from kauthd within {$this->timeout} s ({$why})");
        }
        if ($n === 0) {
            throw new ConnectionError('kauthd closed the connection');
        }
        $uid = null;
        foreach ($message['control'] ?? [] as $control) {
            if ($control['level'] === SOL_SOCKET && $control['type'] === SCM_CREDENTIALS) {
                $uid = $control['data']['uid'];
            }
        }
        if ($uid === null || !in_array($uid, $this->trustedUids, true)) {
            $this->close();
            $who = $uid === null ? 'an unknown uid' : "uid {$uid}";
            throw new ConnectionError("the process on the socket runs as {$who}, not as kauthd (trusted: " . implode(', ', $this->trustedUids) . '); nothing was sent');
        }
        return implode('', $message['iov']);
    }
}
