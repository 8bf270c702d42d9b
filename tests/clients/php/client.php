<?php
// php-amqplib (Debian's php-amqplib), used the way PHP applications (and Symfony
// Messenger / Laravel queue drivers) use it. php-amqplib has no automatic recovery
// (applications call reconnect() themselves), so there is no restart test.
require_once '/usr/share/php/PhpAmqpLib/autoload.php';

use PhpAmqpLib\Connection\AMQPStreamConnection;
use PhpAmqpLib\Message\AMQPMessage;
use PhpAmqpLib\Wire\AMQPTable;

$host = getenv('WARREN_AMQP_HOST') ?: '127.0.0.1';
$port = (int)(getenv('WARREN_AMQP_PORT') ?: 5672);
$run = bin2hex(random_bytes(4));
$passed = 0;
$failed = 0;

function name($what) { global $run; return "clients.php-amqplib.$run.$what"; }
function expect($cond, $why) { if (!$cond) throw new RuntimeException($why); }
function eq($what, $want, $got) {
    expect($want === $got, "$what: expected " . var_export($want, true) . ", got " . var_export($got, true));
}
function check($label, callable $f) {
    global $passed, $failed;
    try {
        $f();
        $passed++;
        echo "PASS $label\n";
    } catch (Throwable $e) {
        $failed++;
        echo "FAIL $label: " . get_class($e) . ': ' . $e->getMessage() . "\n";
        fwrite(STDERR, $e->getTraceAsString() . "\n");
    }
}
function drain($ch, callable $until, $secs = 5.0) {
    $deadline = microtime(true) + $secs;
    while (!$until() && microtime(true) < $deadline) {
        try { $ch->wait(null, false, 0.1); } catch (PhpAmqpLib\Exception\AMQPTimeoutException $e) {}
    }
}
function tempq($ch) { [$q] = $ch->queue_declare('', false, false, true, true); return $q; }

$conn = null;
$ch = null;
check('connect', function () use ($host, $port, &$conn, &$ch) {
    $conn = new AMQPStreamConnection($host, $port, 'guest', 'guest');
    $ch = $conn->channel();
    $props = $conn->getServerProperties();
    expect(isset($props['capabilities']), 'no capabilities in server properties');
});
if ($ch === null) { echo "$passed passed, $failed failed\n"; exit(1); }

check('declare', function () use ($ch) {
    $ae = name('ae'); $x = name('topic');
    $ch->exchange_declare($ae, 'fanout', false, false, true);
    $ch->exchange_declare($x, 'topic', false, false, true, false, false, new AMQPTable(['alternate-exchange' => $ae]));
    [$q] = $ch->queue_declare(name('q'), false, false, false, true, false,
        new AMQPTable(['x-message-ttl' => 60000, 'x-max-length' => 100]));
    $ch->queue_bind($q, $x, 'a.*');
    $qa = tempq($ch);
    expect(str_starts_with($qa, 'amq.gen-'), "server-named queue $qa");
    $ch->queue_bind($qa, $ae);
    $hx = name('headers');
    $ch->exchange_declare($hx, 'headers', false, false, true);
    $qh = tempq($ch);
    $ch->queue_bind($qh, $hx, '', false, new AMQPTable(['x-match' => 'all', 'kind' => 'order']));
    $ch->basic_publish(new AMQPMessage('routed'), $x, 'a.b');
    $ch->basic_publish(new AMQPMessage('to-ae'), $x, 'zz');
    $ch->basic_publish(new AMQPMessage('h', ['application_headers' => new AMQPTable(['kind' => 'order'])]), $hx);
    usleep(100000);
    eq('routed', 'routed', $ch->basic_get($q, true)?->getBody());
    eq('alternate', 'to-ae', $ch->basic_get($qa, true)?->getBody());
    eq('headers', 'h', $ch->basic_get($qh, true)?->getBody());
    [, $count] = $ch->queue_declare($q, true);
    eq('passive count', 0, $count);
});

check('confirm-mandatory', function () use ($conn) {
    $c = $conn->channel();
    $acks = []; $nacks = []; $returns = [];
    $c->set_ack_handler(function ($m) use (&$acks) { $acks[] = $m->getBody(); });
    $c->set_nack_handler(function ($m) use (&$nacks) { $nacks[] = $m->getBody(); });
    $c->set_return_listener(function ($code, $text, $x, $key, $m) use (&$returns) { $returns[] = [$code, $text, $m->getBody()]; });
    $c->confirm_select();
    $q = tempq($c);
    $c->basic_publish(new AMQPMessage('ok'), '', $q, true);
    $c->basic_publish(new AMQPMessage('lost'), '', name('nowhere'), true);
    $c->wait_for_pending_acks_returns(5);
    sort($acks); // one ack may cover both (multiple), in any order
    eq('acks', ['lost', 'ok'], $acks);
    eq('nacks', [], $nacks);
    eq('returns', [[312, 'NO_ROUTE', 'lost']], $returns);
    $c->close();
});

check('prefetch-ack', function () use ($conn) {
    $c = $conn->channel();
    $c->basic_qos(null, 2, null);
    $q = tempq($c);
    $got = [];
    $c->basic_consume($q, '', false, false, false, false, function ($m) use (&$got) { $got[] = $m; });
    for ($i = 0; $i < 5; $i++) $c->basic_publish(new AMQPMessage((string)$i), '', $q);
    drain($c, fn() => false, 0.5);
    eq('unacked deliveries with prefetch 2', 2, count($got));
    $acked = 0;
    drain($c, function () use (&$got, &$acked) {
        while ($acked < count($got)) $got[$acked++]->ack();
        return $acked === 5;
    });
    eq('bodies', ['0', '1', '2', '3', '4'], array_map(fn($m) => $m->getBody(), $got));
    $c->close();
});

check('nack-requeue', function () use ($ch) {
    $q = tempq($ch);
    $ch->basic_publish(new AMQPMessage('again'), '', $q);
    usleep(100000);
    $m = $ch->basic_get($q);
    expect($m && !$m->isRedelivered(), 'first get');
    $m->nack(true);
    $m2 = $ch->basic_get($q);
    expect($m2 && $m2->isRedelivered(), 'redelivered flag not set after nack requeue');
    $m2->ack();
});

check('dead-letter', function () use ($ch) {
    $dlx = name('dlx'); $src = name('dl-src');
    $ch->exchange_declare($dlx, 'direct', false, false, true);
    $dlq = tempq($ch);
    $ch->queue_bind($dlq, $dlx, 'dead');
    $ch->queue_declare($src, false, false, true, true, false,
        new AMQPTable(['x-dead-letter-exchange' => $dlx, 'x-dead-letter-routing-key' => 'dead']));
    $ch->basic_publish(new AMQPMessage('doomed'), '', $src);
    usleep(100000);
    $m = $ch->basic_get($src);
    expect($m !== null, 'message not in source queue');
    $m->reject(false);
    $got = null;
    for ($i = 0; $i < 100 && $got === null; $i++) {
        $got = $ch->basic_get($dlq, true);
        if ($got === null) usleep(50000);
    }
    expect($got !== null, 'nothing dead-lettered');
    $h = $got->get('application_headers')->getNativeData();
    $deaths = $h['x-death'] ?? null;
    expect(is_array($deaths) && count($deaths) === 1, 'x-death: ' . json_encode($deaths));
    $d = $deaths[0];
    eq('x-death', [1, 'rejected', $src, '', [$src]], [$d['count'], $d['reason'], $d['queue'], $d['exchange'], $d['routing-keys']]);
    expect(isset($d['time']), 'x-death has no time');
    eq('x-first-death-queue', $src, $h['x-first-death-queue']);
});

check('rpc', function () use ($conn, $ch) {
    $s = $conn->channel();
    [$rq] = $s->queue_declare(name('rpc'), false, false, false, true);
    $s->basic_consume($rq, '', false, false, false, false, function ($m) use ($s) {
        $s->basic_publish(new AMQPMessage(strrev($m->getBody()), ['correlation_id' => $m->get('correlation_id')]), '', $m->get('reply_to'));
        $m->ack();
    });
    $reply = tempq($ch);
    $replies = [];
    $ch->basic_consume($reply, '', false, true, false, false, function ($m) use (&$replies) {
        $replies[$m->get('correlation_id')] = $m->getBody();
    });
    $ch->basic_publish(new AMQPMessage('abc', ['reply_to' => $reply, 'correlation_id' => 'id-1']), '', $rq);
    $deadline = microtime(true) + 5;
    while (count($replies) < 1 && microtime(true) < $deadline) {
        try { $s->wait(null, true, 0.05); } catch (PhpAmqpLib\Exception\AMQPTimeoutException $e) {}
        try { $ch->wait(null, true, 0.05); } catch (PhpAmqpLib\Exception\AMQPTimeoutException $e) {}
    }
    eq('replies', ['id-1' => 'cba'], $replies);
});

$conn->close();
echo "$passed passed, $failed failed\n";
exit($failed === 0 ? 0 : 1);
