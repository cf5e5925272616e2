using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using UsageBilling.StripeEmulator.Api;
using UsageBilling.StripeEmulator.Webhooks;

namespace UsageBilling.StripeEmulator.State;

/// <summary>
/// All emulated Stripe state: the composition root of one store per resource — <see cref="Customers"/>,
/// <see cref="Catalog"/> (products, prices), <see cref="Billing"/> (subscriptions, invoices), <see cref="Meters"/>
/// (meters, meter events v1 and v2, summaries), <see cref="Checkout"/> and <see cref="Webhooks"/> — with the clock,
/// the due work that spans them (period ends, invoice finalizations, Checkout expiries), the state file
/// (<c>StripeBackend.Persistence.cs</c>) and the helpers every store shares (ids, lists, metadata).
/// </summary>
/// <remarks>
/// Locking: one lock (<c>_gate</c>) guards all state, the stores' included — they are handed it and own none. An
/// operation spanning resources holds it from start to end, so it sees one consistent state and no lock order can
/// deadlock. Parsing and JSON rendering happen outside it where they can, so the meter-event hot path stays cheap.
/// </remarks>
internal sealed partial class StripeBackend
{
    public const string ApiVersion = "2026-10-28.endive";
    private const string Alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

    private readonly Lock _gate = new();

    /// <summary>Unix seconds of the next period end, invoice finalization or Checkout expiry; lazily checked on every request.</summary>
    private long _nextDue = long.MaxValue;

    public StripeBackend(EmulatorRuntime runtime, WebhookDispatcher webhooks)
    {
        Runtime = runtime;
        Webhooks = new WebhookStore(_gate, webhooks, () => Now);
        Customers = new CustomerStore(_gate, () => Now);
        Meters = new MeterStore(_gate, runtime, () => Now, Customers, Webhooks);
        Catalog = new CatalogStore(_gate, () => Now, Meters);
        Billing = new BillingStore(_gate, runtime, () => Now, Customers, Catalog, Meters, Webhooks, ProcessDueLocked, RecomputeNextDue);
        Checkout = new CheckoutStore(_gate, () => Now, Customers, Catalog, Billing, Webhooks, ProcessDueLocked, RecomputeNextDue);
    }

    public EmulatorRuntime Runtime { get; }

    /// <summary>Webhook endpoints and the event log.</summary>
    public WebhookStore Webhooks { get; }

    /// <summary>Customers.</summary>
    public CustomerStore Customers { get; }

    /// <summary>Meters, meter events (v1 and the v2 stream) and their summaries.</summary>
    public MeterStore Meters { get; }

    /// <summary>Products and prices.</summary>
    public CatalogStore Catalog { get; }

    /// <summary>Subscriptions and invoices.</summary>
    public BillingStore Billing { get; }

    /// <summary>Checkout Sessions.</summary>
    public CheckoutStore Checkout { get; }

    public long Now => Runtime.Clock.GetUtcNow().ToUnixTimeSeconds();

    /// <summary>A Stripe-looking id (<c>prefix</c> + base62). Ids need uniqueness, not secrecy; see <see cref="NewSecret"/>.</summary>
    public static string NewId(string prefix, int length = 24) =>
        string.Create(prefix.Length + length, prefix, static (span, p) =>
        {
            p.AsSpan().CopyTo(span);
            var rest = span[p.Length..];
            Random.Shared.GetItems(Alphabet.AsSpan(), rest);
        });

    /// <summary>A signing secret from the cryptographic generator.</summary>
    public static string NewSecret(string prefix, int length) =>
        prefix + RandomNumberGenerator.GetString(Alphabet, length);

    /// <summary>Forgets every object, event and meter event.</summary>
    public void Reset()
    {
        lock (_gate)
        {
            Customers.Clear();
            Catalog.Clear();
            Billing.Clear();
            Webhooks.Clear();
            Checkout.Clear();
            Meters.Clear();
            _nextDue = long.MaxValue;
        }
    }

    // ---------------------------------------------------------------- lists

    /// <summary>Stripe list semantics over a newest-first sequence: limit 1..100, starting_after, ending_before, has_more.</summary>
    internal static JsonObject ListOf<T>(IReadOnlyList<T> newestFirst, Func<T, string> id, Func<T, JsonNode> render, Params p, string url)
    {
        var limit = p.Long("limit") ?? 10;
        if (limit < 1 || limit > 100)
        {
            throw StripeApiException.Invalid("Invalid limit: must be between 1 and 100", "limit", "parameter_invalid_integer");
        }

        var after = p.Str("starting_after");
        var before = p.Str("ending_before");
        if (!string.IsNullOrEmpty(after) && !string.IsNullOrEmpty(before))
        {
            throw StripeApiException.Invalid("You may only specify one of these parameters: ending_before, starting_after.", "ending_before");
        }

        int from;
        int to;
        bool hasMore;
        if (!string.IsNullOrEmpty(before))
        {
            var idx = IndexOf(newestFirst, id, before, "ending_before");
            to = idx;
            from = (int)Math.Max(0, idx - limit);
            hasMore = from > 0;
        }
        else
        {
            from = string.IsNullOrEmpty(after) ? 0 : IndexOf(newestFirst, id, after, "starting_after") + 1;
            to = (int)Math.Min(newestFirst.Count, from + limit);
            hasMore = to < newestFirst.Count;
        }

        var data = new JsonArray();
        for (var i = from; i < to; i++)
        {
            data.Add(render(newestFirst[i]));
        }

        return new JsonObject
        {
            ["object"] = "list",
            ["data"] = data,
            ["has_more"] = hasMore,
            ["url"] = url,
        };
    }

    private static int IndexOf<T>(IReadOnlyList<T> items, Func<T, string> id, string wanted, string param)
    {
        for (var i = 0; i < items.Count; i++)
        {
            if (id(items[i]) == wanted)
            {
                return i;
            }
        }

        throw StripeApiException.Invalid($"Invalid {param}: no such object '{wanted}' in this list", param, "resource_missing");
    }

    internal static List<T> NewestFirst<T>(IReadOnlyList<T> creationOrder, Func<T, bool> filter)
    {
        var result = new List<T>();
        for (var i = creationOrder.Count - 1; i >= 0; i--)
        {
            if (filter(creationOrder[i]))
            {
                result.Add(creationOrder[i]);
            }
        }

        return result;
    }

    // ---------------------------------------------------------------- helpers

    internal static string? NullIfEmpty(string? s) => string.IsNullOrEmpty(s) ? null : s;

    internal static JsonObject Metadata(Dictionary<string, string> metadata)
    {
        var o = new JsonObject();
        foreach (var (k, v) in metadata)
        {
            o[k] = v;
        }

        return o;
    }

    /// <summary>Applies Stripe's metadata update rules: a key set to "" is removed.</summary>
    internal static void MergeMetadata(Dictionary<string, string> target, Params p)
    {
        var update = p.Map("metadata");
        if (update is null)
        {
            return;
        }

        if (update.Count == 0 && p.Str("metadata") == string.Empty)
        {
            target.Clear();
            return;
        }

        foreach (var (k, v) in update)
        {
            if (v.Length == 0)
            {
                target.Remove(k);
            }
            else
            {
                target[k] = v;
            }
        }
    }

    internal static string UnixToIso(long unix) =>
        DateTimeOffset.FromUnixTimeSeconds(unix).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    // ---------------------------------------------------------------- the billing clock

    /// <summary>Cheap check on every request; runs period ends, finalizations and Checkout expiries that are due.</summary>
    public void ProcessDue(long now)
    {
        if (now < Volatile.Read(ref _nextDue))
        {
            return;
        }

        lock (_gate)
        {
            ProcessDueLocked(now);
        }
    }

    /// <summary>Runs every due period end, invoice finalization and Checkout expiry in time order, across the stores. Caller holds the lock.</summary>
    private void ProcessDueLocked(long now)
    {
        if (now < _nextDue)
        {
            return;
        }

        while (true)
        {
            var (dueSub, subAt) = Billing.FirstPeriodEnd(now);
            var dueInv = Billing.FirstFinalization(now);
            var dueSession = Checkout.FirstExpiry(now);

            if (dueSub is null && dueInv is null && dueSession is null)
            {
                break;
            }

            if (dueSession is not null
                && (dueSub is null || dueSession.ExpiresAt <= subAt)
                && (dueInv is null || dueSession.ExpiresAt <= dueInv.FinalizeAt))
            {
                Checkout.ExpireLocked(dueSession, dueSession.ExpiresAt);
            }
            else if (dueInv is not null && (dueSub is null || dueInv.FinalizeAt <= subAt))
            {
                Billing.FinalizeLocked(dueInv, dueInv.FinalizeAt);
            }
            else
            {
                Billing.ClosePeriod(dueSub!, subAt);
            }
        }

        RecomputeNextDue();
    }

    /// <summary>Sets when due work is next (the stores' earliest). Caller holds the lock.</summary>
    private void RecomputeNextDue()
    {
        Volatile.Write(ref _nextDue, Math.Min(Billing.NextDue(), Checkout.NextDue()));
    }
}
