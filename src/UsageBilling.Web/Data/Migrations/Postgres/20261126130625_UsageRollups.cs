using System;
using Microsoft.EntityFrameworkCore.Migrations;
using UsageBilling.EntityFrameworkCore;

#nullable disable

namespace UsageBilling.Web.Data.Migrations.Postgres
{
    /// <inheritdoc />
    public partial class UsageRollups : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "usage_daily",
                columns: table => new
                {
                    user_id = table.Column<Guid>(type: "uuid", nullable: false),
                    meter = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: false),
                    day = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    quantity = table.Column<long>(type: "bigint", nullable: false),
                    event_count = table.Column<long>(type: "bigint", nullable: false),
                    reported_quantity = table.Column<long>(type: "bigint", nullable: false),
                    reported_count = table.Column<long>(type: "bigint", nullable: false),
                    last_reported_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_usage_daily", x => new { x.user_id, x.day, x.meter });
                    table.ForeignKey(
                        name: "fk_usage_daily_user",
                        column: x => x.user_id,
                        principalTable: "AspNetUsers",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                })
                .Annotation("Npgsql:StorageParameter:fillfactor", 70);

            migrationBuilder.CreateTable(
                name: "usage_hourly",
                columns: table => new
                {
                    user_id = table.Column<Guid>(type: "uuid", nullable: false),
                    meter = table.Column<string>(type: "character varying(100)", maxLength: 100, nullable: false),
                    hour = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    quantity = table.Column<long>(type: "bigint", nullable: false),
                    event_count = table.Column<long>(type: "bigint", nullable: false),
                    reported_quantity = table.Column<long>(type: "bigint", nullable: false),
                    reported_count = table.Column<long>(type: "bigint", nullable: false),
                    last_reported_at = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_usage_hourly", x => new { x.user_id, x.hour, x.meter });
                    table.ForeignKey(
                        name: "fk_usage_hourly_user",
                        column: x => x.user_id,
                        principalTable: "AspNetUsers",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                })
                .Annotation("Npgsql:StorageParameter:fillfactor", 70);

            // Existing events: the rollups start in step with the buffer.
            // The rollups filled from the events as this schema version had them: acknowledged = stamped (reported_at).
            // Frozen here, not BackfillUsageRollups(), whose rule (the report is sent) belongs to later schemas; the
            // AcknowledgedByReport migration reconciles the two.
            migrationBuilder.Sql("""
                INSERT INTO usage_hourly (user_id, hour, meter, quantity, event_count, reported_quantity, reported_count, last_reported_at)
                SELECT user_id, date_bin('1 hour', occurred_at, TIMESTAMPTZ '1970-01-01 00:00:00+00'), meter,
                       SUM(quantity), COUNT(*),
                       COALESCE(SUM(quantity) FILTER (WHERE reported_at IS NOT NULL), 0), COUNT(*) FILTER (WHERE reported_at IS NOT NULL),
                       MAX(reported_at)
                FROM usage_events
                GROUP BY 1, 2, 3;
                """);
            migrationBuilder.Sql("""
                INSERT INTO usage_daily (user_id, day, meter, quantity, event_count, reported_quantity, reported_count, last_reported_at)
                SELECT user_id, date_bin('1 day', occurred_at, TIMESTAMPTZ '1970-01-01 00:00:00+00'), meter,
                       SUM(quantity), COUNT(*),
                       COALESCE(SUM(quantity) FILTER (WHERE reported_at IS NOT NULL), 0), COUNT(*) FILTER (WHERE reported_at IS NOT NULL),
                       MAX(reported_at)
                FROM usage_events
                GROUP BY 1, 2, 3;
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "usage_daily");

            migrationBuilder.DropTable(
                name: "usage_hourly");
        }
    }
}
