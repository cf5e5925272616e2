using System.Text.Json;
using System.Text.Json.Serialization;

namespace UsageBilling.StripeEmulator.State;

internal sealed partial class StripeBackend
{
    private static readonly JsonSerializerOptions SnapshotJson = new(JsonSerializerDefaults.General)
    {
        PreferredObjectCreationHandling = JsonObjectCreationHandling.Populate,
        IncludeFields = false,
    };

    internal sealed class Snapshot
    {
        public long SavedAt { get; set; }
        public long Sequence { get; set; }
        public List<Customer> Customers { get; set; } = [];
        public List<Product> Products { get; set; } = [];
        public List<Price> Prices { get; set; } = [];
        public List<Meter> Meters { get; set; } = [];
        public List<Subscription> Subscriptions { get; set; } = [];
        public List<Invoice> Invoices { get; set; } = [];
        public List<WebhookEndpoint> Endpoints { get; set; } = [];
        public List<EventRecord> Events { get; set; } = [];
        public List<MeterEventRecord> MeterEvents { get; set; } = [];
        public List<CheckoutSession> CheckoutSessions { get; set; } = [];
    }

    /// <summary>Writes the whole state to <paramref name="path"/> (atomically, through a temp file).</summary>
    public async Task SaveAsync(string path, CancellationToken ct)
    {
        byte[] bytes;
        lock (_gate)
        {
            var snapshot = new Snapshot
            {
                SavedAt = Now,
                Sequence = Meters.Sequence,
                Customers = [.. Customers.All],
                Products = [.. Catalog.Products],
                Prices = [.. Catalog.Prices],
                Meters = [.. Meters.All],
                Subscriptions = [.. Billing.Subscriptions],
                Invoices = [.. Billing.Invoices],
                Endpoints = [.. Webhooks.Endpoints],
                Events = [.. Webhooks.Events],
                MeterEvents = [.. Meters.Events],
                CheckoutSessions = [.. Checkout.Sessions],
            };
            bytes = JsonSerializer.SerializeToUtf8Bytes(snapshot, SnapshotJson);
        }

        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var temp = full + ".tmp";
        await File.WriteAllBytesAsync(temp, bytes, ct);
        File.Move(temp, full, overwrite: true);
    }

    /// <summary>Replaces the state with the file's content, if the file exists; the clock moves forward to the saved time if it is behind.</summary>
    public async Task<bool> LoadAsync(string path, CancellationToken ct)
    {
        if (!File.Exists(path))
        {
            return false;
        }

        await using var stream = File.OpenRead(path);
        var s = await JsonSerializer.DeserializeAsync<Snapshot>(stream, SnapshotJson, ct)
            ?? throw new InvalidDataException($"The state file '{path}' is empty.");
        Reset();
        lock (_gate)
        {
            Customers.Load(s.Customers);
            Catalog.Load(s.Products, s.Prices);
            Meters.Load(s.Meters, s.MeterEvents, s.Sequence);
            Billing.Load(s.Subscriptions, s.Invoices);
            Webhooks.Load(s.Endpoints, s.Events);
            Checkout.Load(s.CheckoutSessions);

            if (s.SavedAt > Now)
            {
                Runtime.Clock.Set(DateTimeOffset.FromUnixTimeSeconds(s.SavedAt));
            }

            RecomputeNextDue();
        }

        return true;
    }
}
