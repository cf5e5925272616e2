using System.Globalization;
using System.Net;
using Stripe;
using Stripe.V2.Billing;

namespace UsageBilling;

/// <summary>The port around Stripe's v2 meter event stream: up to <see cref="MaxEvents"/> reports per request.</summary>
internal interface IMeterEventStreamSender
{
    /// <summary>Sends the reports as one stream request; throws the Stripe.net exception on failure.</summary>
    /// <param name="reports">At most <see cref="MaxEvents"/> reports.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>A task that completes when Stripe answered 200 (accepted; validation follows asynchronously).</returns>
    Task SendAsync(IReadOnlyList<LeasedReport> reports, CancellationToken cancellationToken);

    /// <summary>Stripe's cap on events in one stream request.</summary>
    const int MaxEvents = 100;
}

/// <summary>
/// Sends reports through Stripe.net's V2 services: <c>POST /v2/billing/meter_event_session</c> for a token (valid
/// 15 minutes), then <c>POST /v2/billing/meter_event_stream</c> on the meter-events host with that token. The session
/// lives in memory, one per process, and is renewed <see cref="RenewBefore"/> before it expires; a token Stripe
/// refuses anyway (<c>billing_meter_event_session_expired</c>, or a 401 because Stripe no longer knows it) is replaced
/// once and the request resent. Each event's identifier is its report id, as on v1, so a resend is harmless.
/// </summary>
internal sealed class StripeMeterEventStreamSender(StripeClient client, TimeProvider time) : IMeterEventStreamSender, IDisposable
{
    /// <summary>How long before its expiry a session is replaced, so no request starts on a token about to lapse.</summary>
    internal static readonly TimeSpan RenewBefore = TimeSpan.FromMinutes(1);

    private readonly SemaphoreSlim _gate = new(1, 1);
    private Session? _session;

    private sealed record Session(string Token, DateTimeOffset ExpiresAt);

    public async Task SendAsync(IReadOnlyList<LeasedReport> reports, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(reports);
        if (reports.Count is 0 or > IMeterEventStreamSender.MaxEvents)
        {
            throw new ArgumentOutOfRangeException(nameof(reports), reports.Count, $"A stream request carries 1 to {IMeterEventStreamSender.MaxEvents} events.");
        }

        var options = new MeterEventStreamCreateOptions
        {
            Events = [.. reports.Select(r => new MeterEventStreamCreateEventOptions
            {
                EventName = r.Meter,
                Identifier = r.Id.ToString(),
                Timestamp = r.Timestamp.UtcDateTime,
                Payload = new Dictionary<string, string>
                {
                    ["stripe_customer_id"] = r.StripeCustomerId,
                    ["value"] = r.Quantity.ToString(CultureInfo.InvariantCulture),
                },
            })],
        };

        var token = await TokenAsync(stale: null, cancellationToken).ConfigureAwait(false);
        try
        {
            await client.V2.Billing.MeterEventStream.CreateAsync(options, new RequestOptions { ApiKey = token }, cancellationToken).ConfigureAwait(false);
        }
        catch (StripeException ex) when (ex is Stripe.V2.TemporarySessionExpiredException || ex.HttpStatusCode == HttpStatusCode.Unauthorized)
        {
            // Expired earlier than its expires_at said (clocks differ), or forgotten: one new session, one resend.
            // A 401 on the new session too is thrown on, and the flusher reads it as a configuration error.
            token = await TokenAsync(stale: token, cancellationToken).ConfigureAwait(false);
            await client.V2.Billing.MeterEventStream.CreateAsync(options, new RequestOptions { ApiKey = token }, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>The current token, or a new session's when there is none, it expires within <see cref="RenewBefore"/>, or it is <paramref name="stale"/>.</summary>
    private async Task<string> TokenAsync(string? stale, CancellationToken cancellationToken)
    {
        if (Usable(Volatile.Read(ref _session), stale) is { } token)
        {
            return token;
        }

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // Another send may have renewed it while this one waited.
            if (Usable(_session, stale) is { } renewed)
            {
                return renewed;
            }

            var created = await client.V2.Billing.MeterEventSession.CreateAsync(new MeterEventSessionCreateOptions(), null, cancellationToken).ConfigureAwait(false);
            var expiresAt = new DateTimeOffset(DateTime.SpecifyKind(created.ExpiresAt, created.ExpiresAt.Kind == DateTimeKind.Local ? DateTimeKind.Local : DateTimeKind.Utc)).ToUniversalTime();
            Volatile.Write(ref _session, new Session(created.AuthenticationToken, expiresAt));
            return created.AuthenticationToken;
        }
        finally
        {
            _gate.Release();
        }
    }

    private string? Usable(Session? session, string? stale) =>
        session is not null && session.Token != stale && time.GetUtcNow() < session.ExpiresAt - RenewBefore ? session.Token : null;

    public void Dispose() => _gate.Dispose();
}
